// The parts of a running commitd, wired from its configuration: decision log
// -> participant client -> coordinator, with their metrics and the log's
// health feeding /readyz. main.ts runs them as a service; tests run the same
// wiring in-process.

import type { Readiness } from './api/server.js';
import type { Config } from './config.js';
import { Coordinator } from './coordinator/coordinator.js';
import type { CoordinatorObserver } from './coordinator/observer.js';
import { SqliteLog } from './log/sqlite-log.js';
import type { Metrics } from './metrics.js';
import { HttpParticipants } from './participants/http-participants.js';
import { answerWaitMsMax } from './protocol/answers.js';

export interface Reporting {
  readonly logError: (error: Error) => void;
  readonly error: (error: Error, context: string) => void;
  readonly heuristic: (message: string) => void;
  /** The log can no longer say what is on disk (an fsync failed); a service stops. */
  readonly fatal?: (error: Error) => void;
}

export interface Assembled {
  readonly log: SqliteLog;
  readonly participants: HttpParticipants;
  readonly coordinator: Coordinator;
}

/** Opens the log (throws LogLockedError or LogUnusableError) and builds the rest on it. */
export function assemble(config: Config, metrics: Metrics, readiness: Readiness, report: Reporting): Assembled {
  const log = new SqliteLog({
    dataDir: config.server.dataDir,
    maxBatchRecords: config.log.maxBatchRecords,
    lazyFlushDelayMs: config.log.lazyFlushDelayMs,
    onFlush: (s) => {
      readiness.logWritable = true;
      metrics.logFlushDuration.observe(s.durationMs / 1000);
      metrics.logFlushRecords.observe(s.records);
    },
    onSync: (s) => {
      metrics.logFsyncs.inc();
      metrics.logFsyncDuration.observe(s.durationMs / 1000);
    },
    onFatal: report.fatal,
    onError: (e) => {
      readiness.logWritable = false;
      metrics.logErrors.inc();
      report.logError(e);
    },
  });
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
    observer: metricsObserver(metrics, report.heuristic),
    defaultTimeoutMs: t.defaultTimeoutMs,
    inFlightMax: t.maxInFlight,
    inFlightBytesMax: t.maxInFlightBytes,
    inFlightPerCallerMax: t.maxInFlightPerCaller,
    participantsMax: t.maxParticipants,
    retryDelayMsMin: p.retryDelayMsMin,
    retryDelayMsMax: p.retryDelayMsMax,
    stuckAfterAttempts: p.stuckAfterAttempts,
    answerWaitMsMax: answerWaitMsMax(p.prepareTimeoutMs, p.phaseTwoTimeoutMs),
    sweepIntervalMs: config.log.sweepIntervalMs,
    retentionMs: t.retentionMs,
    idempotencyKeyRetentionMs: t.idempotencyKeyRetentionMs,
    compactionBatchMax: config.log.compactionBatch,
    // Half of what the client runs at once: the other half stays free for new
    // work arriving during recovery. Measured with 10,000 to recover
    // (npm run bench:recovery, three runs each): peak RSS 252-253 MB with
    // 1,024 outstanding, 191-204 MB with 256, finished no later.
    recoveryCallsMax: Math.max(1, Math.floor(p.maxCallsInFlight / 2)),
    onError: report.error,
  });
  metrics.inFlightSource = () => coordinator.inFlightByState();
  return { log, participants, coordinator };
}

/** The coordinator's reports as Prometheus metrics, heuristics also as a log line an operator sees. */
function metricsObserver(metrics: Metrics, logHeuristic: (message: string) => void): CoordinatorObserver {
  return {
    begun: () => metrics.transactionsBegun.inc(),
    decided: (outcome, abortReason, phaseOneSeconds) => {
      metrics.transactionsDecided.inc({ outcome, reason: abortReason ?? '' });
      if (phaseOneSeconds !== null) metrics.phaseDuration.observe({ phase: 'prepare' }, phaseOneSeconds);
    },
    finished: (outcome, phaseTwoSeconds) => {
      metrics.transactionsFinished.inc({ outcome });
      if (phaseTwoSeconds !== null) metrics.phaseDuration.observe({ phase: outcome }, phaseTwoSeconds);
    },
    heuristic: (r) => {
      metrics.heuristics.inc({ heuristic: r.heuristic });
      logHeuristic(`participant ${r.participant} reports heuristic ${r.heuristic} for ${r.txId}, decided ${r.decided}`);
    },
    recovered: (count) => metrics.recovered.inc(count),
    compacted: (count) => metrics.compacted.inc(count),
    stuckParticipants: (count) => metrics.stuckParticipants.set(count),
  };
}
