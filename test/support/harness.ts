// An in-process commitd for tests: the real coordinator, log (in a fresh
// temp directory) and API, with settings tuned for quick tests.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import type { Readiness } from '../../src/api/readiness.js';
import { buildApi } from '../../src/api/server.js';
import { assemble, type Reporting } from '../../src/assemble.js';
import { type Config, loadConfig } from '../../src/config.js';
import type { Coordinator } from '../../src/coordinator/coordinator.js';
import type { DecisionLog } from '../../src/log/decision-log.js';
import { Metrics } from '../../src/metrics.js';
import type { OrphanScanner } from '../../src/participants/databases/orphan-scanner.js';

export interface Harness {
  readonly app: FastifyInstance;
  readonly coordinator: Coordinator;
  readonly orphans: OrphanScanner;
  readonly log: DecisionLog;
  readonly metrics: Metrics;
  readonly config: Config;
  readonly dataDir: string;
  readonly errors: Error[];
  readonly readiness: Readiness;
  /** Stops everything; the data directory stays for a restart unless `removeData`. */
  close(removeData?: boolean): Promise<void>;
}

export type Overrides = { [S in Exclude<keyof Config, 'databases'>]?: Partial<Config[S]> } & {
  databases?: Config['databases'];
};

export function tempDir(prefix = 'commitd-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function testConfig(overrides: Overrides = {}, dataDir = tempDir()): Config {
  const base = loadConfig({});
  return {
    server: { ...base.server, dataDir, logLevel: 'silent', ...overrides.server },
    transactions: { ...base.transactions, ...overrides.transactions },
    participants: {
      ...base.participants,
      prepareTimeoutMs: 1000,
      phaseTwoTimeoutMs: 1000,
      retryDelayMsMin: 10,
      retryDelayMsMax: 100,
      ...overrides.participants,
    },
    log: { ...base.log, sweepIntervalMs: 50, ...overrides.log },
    cluster: { ...base.cluster, ...overrides.cluster },
    databases: overrides.databases ?? base.databases,
  };
}

/**
 * `logger`: fastify's logger option (tests that read the log pass a stream); `tls`: serve HTTPS;
 * `report`: also hears what the parts report (errors are collected in `errors` either way).
 */
export async function startHarness(
  overrides: Overrides = {},
  dataDir?: string,
  logger: FastifyServerOptions['logger'] = false,
  tls: { cert: string; key: string } | null = null,
  report: Reporting | null = null,
): Promise<Harness> {
  const config = testConfig(overrides, dataDir);
  const metrics = new Metrics({ processMetrics: false });
  const readiness: Readiness = { ready: false, stopping: false, logWritable: true };
  const errors: Error[] = [];
  const { log, member, participants, coordinator, orphans, deploymentId, urlPolicy, peerCa } = await assemble(
    config,
    metrics,
    readiness,
    {
      logError: (e) => {
        errors.push(e);
        report?.logError(e);
      },
      error: (e, context, about) => {
        errors.push(e);
        report?.error(e, context, about);
      },
      heuristic: (message, about) => report?.heuristic(message, about),
      orphan: (message, about) => report?.orphan?.(message, about),
    },
  );
  const app = await buildApi({
    coordinator,
    deploymentId,
    member,
    config,
    metrics,
    readiness,
    logger,
    tls,
    urlPolicy,
    peerCa,
  });
  await app.ready();
  if (member === null) await coordinator.recover();
  else {
    // In process, called by inject only: an address no other instance uses.
    await coordinator.recover([]);
    await member.start('http://127.0.0.1:9');
  }
  orphans.start();
  readiness.ready = true;
  return {
    app,
    coordinator,
    orphans,
    log,
    metrics,
    config,
    dataDir: config.server.dataDir,
    errors,
    readiness,
    close: async (removeData = false) => {
      await app.close();
      await orphans.stop();
      await member?.stop();
      await coordinator.stop();
      await participants.close();
      await log.close();
      if (removeData) fs.rmSync(config.server.dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * This environment without tap's coverage and loader, for a benchmark run as
 * a child process: it and the processes it starts would each write V8
 * coverage, doubling the run's time, and a bench's coverage is not what its
 * test is for.
 */
export function withoutCoverage(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.NODE_V8_COVERAGE;
  delete env.NODE_OPTIONS;
  for (const k of Object.keys(env)) if (k.startsWith('TAP') || k.startsWith('_TAPJS')) delete env[k];
  return env;
}
