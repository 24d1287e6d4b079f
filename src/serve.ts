// The composition root: config -> log -> participants -> coordinator -> api
// -> listen -> recover -> ready. Exit codes: 0 clean stop, 2 bad config,
// 3 log locked by another process, 4 log unusable (at start, or an fsync
// failed while running), 1 anything else. Run by `commitd serve` (what
// `npm start` runs) and by src/main.ts (the container's command).

// The modules that import the service's optional peer dependencies (fastify,
// better-sqlite3) are loaded once service-peers.ts has found them installed.
import type { Readiness } from './api/readiness.js';
import { ConfigError, loadConfig } from './config.js';
import { LogLockedError } from './log/decision-log.js';
import { Metrics } from './metrics.js';
import { type LineLogger, logReporting } from './reporting.js';
import { exposure } from './security/exposure.js';
import { readPair } from './security/pem-files.js';
import { parseTokens, unboundParticipantTokens } from './security/tokens.js';
import { missingPeersProblem, peersNeeded } from './service-peers.js';

async function start(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  let tls: ReturnType<typeof readPair>;
  try {
    config = loadConfig();
    tls = readPair(
      config.server.tlsCertFile,
      config.server.tlsKeyFile,
      'COMMITD_TLS_CERT_FILE',
      'COMMITD_TLS_KEY_FILE',
    );
  } catch (error) {
    return exit(error instanceof ConfigError ? 2 : 1, `commitd: configuration: ${(error as Error).message}`);
  }
  const tokens = parseTokens(config.server.tokens, config.server.authToken);
  const exposed = exposure(config.server.host, tokens.length, config.server.insecure);
  if (exposed.kind === 'refuse') return exit(2, `commitd: configuration: ${exposed.message}`);
  // Said before anything else, on stderr, where it is seen even with logs shipped elsewhere.
  if (exposed.kind === 'warn') console.error(`commitd: WARNING: ${exposed.message}`);
  const missing = missingPeersProblem(peersNeeded(config));
  if (missing !== null) return exit(1, `commitd: ${missing}`);
  const [{ buildApi }, { assemble }] = await Promise.all([import('./api/server.js'), import('./assemble.js')]);

  const metrics = new Metrics();
  const readiness: Readiness = { ready: false, stopping: false, logWritable: true };
  const app: { log: LineLogger } = { log: console };
  let assembled: Awaited<ReturnType<typeof assemble>>;
  try {
    assembled = await assemble(
      config,
      metrics,
      readiness,
      logReporting(
        () => app.log,
        (e) => {
          // Before anything acts on the failed write: recovery at the next
          // start reads what the disk really holds.
          console.error(`commitd: stopping: ${e.message}`);
          process.exit(4);
        },
      ),
    );
  } catch (error) {
    if (error instanceof ConfigError) return exit(2, `commitd: configuration: ${error.message}`);
    return exit(error instanceof LogLockedError ? 3 : 4, `commitd: ${(error as Error).message}`);
  }
  const { log, member, participants, coordinator, orphans, deploymentId, urlPolicy, commitdOrigins, peerCa } =
    assembled;

  const server = await buildApi({
    coordinator,
    deploymentId,
    member,
    config,
    metrics,
    readiness,
    logger: { level: config.server.logLevel },
    tls,
    urlPolicy,
    peerCa,
  });
  app.log = server.log;

  try {
    await server.listen({ host: config.server.host, port: config.server.port });
  } catch (error) {
    await log.close();
    return exit(
      1,
      `commitd: cannot listen on ${config.server.host}:${config.server.port}: ${(error as Error).message}`,
    );
  }

  // Listening first, so /healthz answers while recovery runs and /readyz
  // tells the orchestrator when to send traffic.
  const bound = server.server.address();
  const address = typeof bound === 'object' && bound !== null ? `${bound.address}:${bound.port}` : String(bound);
  if (typeof bound === 'object' && bound !== null) {
    commitdOrigins.listening(bound.port, config.cluster.advertiseUrl ?? listeningUrl(bound, tls !== null));
  }
  let recovered: number;
  if (member === null) {
    try {
      recovered = await coordinator.recover();
    } catch (error) {
      // The log cannot be read (a store gone during the start): as at open.
      await log.close();
      return exit(4, `commitd: cannot recover from the decision log: ${(error as Error).message}`);
    }
  } else {
    // Several instances may share the store: this one recovers the shards
    // it takes (the member adopts them), not everything.
    const advertiseUrl = config.cluster.advertiseUrl ?? listeningUrl(bound, tls !== null);
    if (advertiseUrl === null) {
      await log.close();
      return exit(
        2,
        `commitd: configuration: listening on ${address}, commitd cannot tell how the other instances reach it: set COMMITD_ADVERTISE_URL`,
      );
    }
    try {
      recovered = await coordinator.recover([]);
      await member.start(advertiseUrl);
    } catch (error) {
      await log.close();
      return exit(4, `commitd: ${(error as Error).message}`);
    }
  }
  // After recovery: until then a transaction still on its way back from the
  // log would read as unknown, and unknown means roll back.
  orphans.start();
  readiness.ready = true;
  if (exposed.kind === 'warn') server.log.warn(exposed.message);
  const unbound = unboundParticipantTokens(tokens);
  if (unbound.length > 0) {
    // Such a token may enlist any name into any active transaction (take a
    // name first, or add a veto): bind each to the names it speaks for.
    server.log.warn(
      { tokens: unbound.map((t) => t.id) },
      'participant tokens not bound to names may enlist, read and inquire as any participant: write participant@<name>:<token> (COMMITD_TOKENS)',
    );
  }
  server.log.info(
    { recovered, dataDir: config.server.dataDir, address, ...(member ? { instance: member.instanceId } : {}) },
    'commitd ready',
  );

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    readiness.stopping = true;
    server.log.info({ signal }, 'stopping: no new transactions, finishing requests in flight');
    const force = setTimeout(() => {
      server.log.warn('shutdown grace period over: closing the log with requests still in flight');
      void log.close().finally(() => process.exit(1));
    }, config.server.shutdownGraceMs);
    force.unref();
    coordinator.stopAccepting();
    // Handed over before anything else: the others take the shards at once
    // (rather than when the leases would run out), and callers still waiting
    // here hear 503 with Retry-After, which their retry takes to the new owner.
    await member?.stop();
    await server.close();
    await orphans.stop();
    await coordinator.stop();
    await participants.close();
    await log.close();
    server.log.info('stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

/** http(s)://address:port of a specific listening address; null for a wildcard one (0.0.0.0, ::). */
function listeningUrl(bound: ReturnType<import('node:net').Server['address']>, https: boolean): string | null {
  if (typeof bound !== 'object' || bound === null) return null;
  if (bound.address === '0.0.0.0' || bound.address === '::') return null;
  const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return `${https ? 'https' : 'http'}://${host}:${bound.port}`;
}

function exit(code: number, message: string): void {
  console.error(message);
  process.exitCode = code;
}

/** Starts the service in this process; it runs until SIGTERM/SIGINT, and sets the exit code when it cannot start. */
export function serve(): Promise<void> {
  return start().catch((error) => {
    console.error('commitd: failed to start:', error);
    process.exit(1);
  });
}
