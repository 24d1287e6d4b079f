// The composition root: config -> log -> participants -> coordinator -> api
// -> listen -> recover -> ready. Exit codes: 0 clean stop, 2 bad config,
// 3 log locked by another process, 4 log unusable, 1 anything else.

import { buildApi, type Readiness } from './api/server.js';
import { ConfigError, loadConfig } from './config.js';
import { Coordinator } from './coordinator/coordinator.js';
import { LogLockedError } from './log/decision-log.js';
import { SqliteLog } from './log/sqlite-log.js';
import { Metrics } from './metrics.js';
import { HttpParticipants } from './participants/http-participants.js';

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (error) {
    return exit(error instanceof ConfigError ? 2 : 1, `commitd: configuration: ${(error as Error).message}`);
  }

  const metrics = new Metrics();
  const readiness: Readiness = { ready: false, stopping: false, logWritable: true };
  const app = { log: console as { error: (...a: unknown[]) => void; warn: (...a: unknown[]) => void } };
  let log: SqliteLog;
  try {
    log = new SqliteLog({
      dataDir: config.server.dataDir,
      maxBatchRecords: config.log.maxBatchRecords,
      lazyFlushDelayMs: config.log.lazyFlushDelayMs,
      onFlush: (s) => {
        readiness.logWritable = true;
        metrics.logFlushDuration.observe(s.durationMs / 1000);
        metrics.logFlushRecords.observe(s.records);
        if (s.fsynced) metrics.logFsyncs.inc();
      },
      onError: (e) => {
        readiness.logWritable = false;
        metrics.logErrors.inc();
        app.log.error({ err: e }, 'writing the decision log failed');
      },
    });
  } catch (error) {
    return exit(error instanceof LogLockedError ? 3 : 4, `commitd: ${(error as Error).message}`);
  }

  const p = config.participants;
  const participants = new HttpParticipants({
    prepareTimeoutMs: p.prepareTimeoutMs,
    phaseTwoTimeoutMs: p.phaseTwoTimeoutMs,
    connectionsPerOrigin: p.connectionsPerOrigin,
    maxCallsInFlight: p.maxCallsInFlight,
    keepAliveTimeoutMs: p.keepAliveTimeoutMs,
    maxAnswerBytes: p.maxAnswerBytes,
    signingSecret: p.signingSecret,
    onCall: (c) => {
      metrics.participantRequests.inc({ message: c.message, result: c.result });
      metrics.participantLatency.observe({ message: c.message }, c.durationMs / 1000);
    },
  });

  const t = config.transactions;
  const coordinator = new Coordinator({
    log,
    participants,
    metrics,
    defaultTimeoutMs: t.defaultTimeoutMs,
    maxInFlight: t.maxInFlight,
    maxParticipants: t.maxParticipants,
    retryDelayMsMin: p.retryDelayMsMin,
    retryDelayMsMax: p.retryDelayMsMax,
    stuckAfterAttempts: p.stuckAfterAttempts,
    answerWaitMsMax: p.prepareTimeoutMs + p.phaseTwoTimeoutMs + 1000,
    sweepIntervalMs: config.log.sweepIntervalMs,
    retentionMs: t.retentionMs,
    compactionBatch: config.log.compactionBatch,
    onError: (e, context) => app.log.error({ err: e }, context),
  });

  const server = await buildApi({ coordinator, config, metrics, readiness, logger: { level: config.server.logLevel } });
  app.log = server.log;

  try {
    await server.listen({ host: config.server.host, port: config.server.port });
  } catch (error) {
    log.close();
    return exit(
      1,
      `commitd: cannot listen on ${config.server.host}:${config.server.port}: ${(error as Error).message}`,
    );
  }

  // Listening first, so /healthz answers while recovery runs and /readyz
  // tells the orchestrator when to send traffic.
  const recovered = coordinator.recover();
  readiness.ready = true;
  const bound = server.server.address();
  const address = typeof bound === 'object' && bound !== null ? `${bound.address}:${bound.port}` : String(bound);
  server.log.info({ recovered, dataDir: config.server.dataDir, address }, 'commitd ready');

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    readiness.stopping = true;
    server.log.info({ signal }, 'stopping: no new transactions, finishing requests in flight');
    const force = setTimeout(() => {
      server.log.warn('shutdown grace period over: closing the log with requests still in flight');
      log.close();
      process.exit(1);
    }, config.server.shutdownGraceMs);
    force.unref();
    coordinator.stopAccepting();
    await server.close();
    await coordinator.stop();
    await participants.close();
    log.close();
    server.log.info('stopped');
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

function exit(code: number, message: string): void {
  console.error(message);
  process.exitCode = code;
}

main().catch((error) => {
  console.error('commitd: failed to start:', error);
  process.exit(1);
});
