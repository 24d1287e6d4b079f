// A private NATS server with JetStream for a test: `nats-server -js` on
// 127.0.0.1 only, on a free port, its file store in a temp directory, so a
// test can stop, kill, pause and restart it (the store survives a restart,
// as a real broker's does). Stop it in a teardown (stopAllNats() stops every
// server this process started, for an exit on failure).

import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './postgres-cluster.js';

export const NATS_SERVER_BIN = process.env.COMMITD_TEST_NATS_SERVER ?? 'nats-server';
const READY_TIMEOUT_MS = 10_000;
const READY_POLL_MS = 20;
const STOP_TIMEOUT_MS = 5_000;

export interface NatsServer {
  readonly port: number;
  /** nats://127.0.0.1:<port> */
  readonly url: string;
  /** The JetStream store directory: kept across stop/start and kill/start. */
  readonly storeDir: string;
  /** Starts the server (again) on the same port and store; resolves once it accepts connections. */
  start(): Promise<void>;
  /** SIGTERM and wait for the exit: JetStream flushes its store. */
  stop(): Promise<void>;
  /** SIGKILL and wait for the exit: what was not yet synced may be lost, as in a crash. */
  kill(): Promise<void>;
  /** SIGSTOP: the server keeps its sockets but answers nothing until resume(). */
  pause(): void;
  resume(): void;
  /** Stops the server and removes its files. */
  destroy(): Promise<void>;
}

const running = new Set<NatsServer>();

/** Why no private server can be started here, or null when one can. */
export function natsServerAvailable(): string | null {
  const probe = spawnSync(NATS_SERVER_BIN, ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return `no ${NATS_SERVER_BIN} on PATH (Debian package nats-server)`;
  return null;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

export async function startNatsServer(extraArgs: readonly string[] = []): Promise<NatsServer> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'commitd-nats-'));
  const storeDir = path.join(root, 'jetstream');
  const logFile = path.join(root, 'nats-server.log');
  const port = await freePort();
  let child: ChildProcess | null = null;

  const server: NatsServer = {
    port,
    url: `nats://127.0.0.1:${port}`,
    storeDir,
    async start() {
      if (child !== null && child.exitCode === null && child.signalCode === null) return;
      const log = fs.openSync(logFile, 'a');
      child = spawn(NATS_SERVER_BIN, ['-js', '-sd', storeDir, '-a', '127.0.0.1', '-p', String(port), ...extraArgs], {
        stdio: ['ignore', log, log],
      });
      fs.closeSync(log);
      const started = child;
      const deadline = Date.now() + READY_TIMEOUT_MS;
      while (!(await accepts(port))) {
        if (started.exitCode !== null || started.signalCode !== null) {
          throw new Error(`nats-server exited at start (${started.exitCode ?? started.signalCode}): see ${logFile}`);
        }
        if (Date.now() > deadline)
          throw new Error(`nats-server did not accept connections within ${READY_TIMEOUT_MS} ms`);
        await new Promise((r) => setTimeout(r, READY_POLL_MS));
      }
    },
    async stop() {
      if (child === null) return;
      const stopping = child;
      stopping.kill('SIGCONT');
      stopping.kill('SIGTERM');
      const timer = setTimeout(() => stopping.kill('SIGKILL'), STOP_TIMEOUT_MS);
      await exited(stopping);
      clearTimeout(timer);
    },
    async kill() {
      if (child === null) return;
      child.kill('SIGKILL');
      await exited(child);
    },
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
    async destroy() {
      running.delete(server);
      await server.kill();
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
  await server.start();
  running.add(server);
  return server;
}

/** Kills every server still running, whatever happened: for process exit (synchronous). */
export function stopAllNats(): void {
  for (const server of [...running]) {
    server.resume();
    void server.kill();
  }
}

process.once('exit', stopAllNats);
