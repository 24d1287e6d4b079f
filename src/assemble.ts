// The parts of a running commitd, wired from its configuration: decision log
// -> participant client -> coordinator, with their metrics and the log's
// health feeding /readyz. main.ts runs them as a service; tests run the same
// wiring in-process.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Readiness } from './api/readiness.js';
import { ClusterMember, type ClusterObserver } from './cluster/cluster-member.js';
import { type Config, ConfigError } from './config.js';
import { Coordinator } from './coordinator/coordinator.js';
import type { AboutTransaction, CoordinatorObserver } from './coordinator/observer.js';
import { orphanVerdict } from './coordinator/orphan-verdict.js';
import type { DecisionLog, FlushStats } from './log/decision-log.js';
import { type Fence, PostgresLog } from './log/postgres-log.js';
import { SqliteLog } from './log/sqlite-log.js';
import type { Metrics } from './metrics.js';
import type { DatabaseAdapter } from './participants/databases/database-adapter.js';
import { DatabaseParticipants } from './participants/databases/database-participants.js';
import { MysqlAdapter } from './participants/databases/mysql.js';
import { OrphanScanner } from './participants/databases/orphan-scanner.js';
import { PostgresAdapter } from './participants/databases/postgres.js';
import { HttpParticipants } from './participants/http-participants.js';
import type { ParticipantClient } from './participants/participant-client.js';
import { RoutingParticipants } from './participants/routing-participants.js';
import { CommitdOrigins } from './participants/self-origins.js';
import { parseParticipantSecrets } from './participants/signing.js';
import { internalRefused, parseAllowedPrefixes, type UrlPolicyContext } from './participants/url-policy.js';
import { answerWaitMsMax } from './protocol/answers.js';
import { isLoopbackName } from './security/access.js';
import { readPair, readPem } from './security/pem-files.js';
import { traceIdOf } from './tracing/traceparent.js';

/** What the parts report; `about`: the transaction a report is about, which its log line names (reporting.ts). */
export interface Reporting {
  readonly logError: (error: Error) => void;
  readonly error: (error: Error, context: string, about?: AboutTransaction) => void;
  readonly heuristic: (message: string, about: AboutTransaction) => void;
  /** Something an operator should know that the service deals with itself (a warning). */
  readonly warn?: (message: string, fields: object) => void;
  /** The orphan scan finished a prepared transaction in a database: worth a line in the service's log. */
  readonly orphan?: (message: string, about: AboutTransaction) => void;
  /** The log can no longer say what is on disk (an fsync failed); a service stops. */
  readonly fatal?: (error: Error) => void;
}

export interface Assembled {
  readonly log: DecisionLog;
  /** With the PostgreSQL store: this instance's part in the cluster; start it once listening. */
  readonly member: ClusterMember | null;
  /** HTTP and database participants behind one client; closing it closes the database pools. */
  readonly participants: ParticipantClient;
  readonly coordinator: Coordinator;
  /** Start once the coordinator has recovered (its outcomes are right only then); stop before closing participants. */
  readonly orphans: OrphanScanner;
  /** Which participant URLs are accepted (the API checks them at begin and enlist). */
  readonly urlPolicy: UrlPolicyContext;
  /** The commitd instances no participant URL may reach; tell it the port once listening. */
  readonly commitdOrigins: CommitdOrigins;
  /** COMMITD_PEER_CA_FILE's PEM text (instances speaking HTTPS to each other with a private CA), or null. */
  readonly peerCa: string | null;
  /** The deployment's identity, in the names of prepared transactions (transaction-names.ts). */
  readonly deploymentId: string;
}

/**
 * A per-caller limit: the one configured, or by default (0) a quarter of the
 * global one: a caller alone, or three together, cannot lock the others out
 * (issue 23: 50 begins with an hour's timeout did), and a quarter still lets
 * one busy client use most of what one instance takes in the benchmarks.
 */
export function callerShare(configured: number, global: number): number {
  return configured > 0 ? configured : Math.max(1, Math.floor(global / CALLER_SHARE_DIVISOR));
}

const CALLER_SHARE_DIVISOR = 4;

/** Prepared transactions looked at per database per scan: bounds the work and memory of one scan. */
const ORPHANS_PER_SCAN_MAX = 1000;

/**
 * Reads the participant TLS files (throws ConfigError), opens the log (throws
 * LogLockedError or LogUnusableError) and builds the rest on it.
 */
export async function assemble(
  config: Config,
  metrics: Metrics,
  readiness: Readiness,
  report: Reporting,
): Promise<Assembled> {
  const p = config.participants;
  // Read before anything is opened, like the participants' files: a bad one is a configuration error.
  const peerCa = readPem(config.cluster.peerCaFile, 'COMMITD_PEER_CA_FILE');
  const participantTls = {
    ca: readPem(p.participantCaFile, 'COMMITD_PARTICIPANT_CA_FILE'),
    ...(readPair(
      p.participantCertFile,
      p.participantKeyFile,
      'COMMITD_PARTICIPANT_CERT_FILE',
      'COMMITD_PARTICIPANT_KEY_FILE',
    ) ?? {
      cert: null,
      key: null,
    }),
  };
  // With the PostgreSQL store, any number of instances share it: the member
  // owns shards of transactions, fences the log's writes and tells the
  // coordinator what to drive. Wired both ways, so bound once all exist.
  let coordinatorRef: Coordinator | null = null;
  const member =
    config.log.storeUrl === null
      ? null
      : new ClusterMember({
          url: config.log.storeUrl,
          schema: config.log.storeSchema,
          instanceId: instanceId(),
          leaseMs: config.cluster.leaseMs,
          probeIntervalMs: config.cluster.peerProbeIntervalMs,
          peerSilenceMs: config.cluster.peerSilenceMs,
          adopt: async (shards) => {
            await coordinatorRef?.recover(shards);
          },
          drop: (shards) => coordinatorRef?.drop(shards),
          flush: () => log.flush(),
          observer: clusterObserver(metrics, report),
          onError: (error, context) => report.error(error, context),
          peerCa,
        });
  const fence: Fence | undefined =
    member === null
      ? undefined
      : {
          ownerId: member.instanceId,
          epochOf: (shard) => member.epochOf(shard),
          lost: (shard, epoch) => member.lost(shard, epoch),
          refused: (tx, reason) => {
            void coordinatorRef
              ?.writeRefused(tx.id, reason)
              .catch((error) => report.error(error as Error, `handing ${tx.id} on`));
          },
        };
  const log = await openLog(config, metrics, readiness, report, fence);
  const deploymentId = await claimDeploymentId(log, config.participants.deploymentId);
  const onCall = (c: { message: string; result: string; durationMs: number }) => {
    metrics.participantRequests.inc({ message: c.message, result: c.result });
    metrics.participantLatency.observe({ message: c.message }, c.durationMs / 1000);
  };
  const commitdOrigins = new CommitdOrigins(
    config.server.host,
    config.server.port,
    config.cluster.advertiseUrl,
    () => member?.instanceUrls ?? [],
  );
  const allowed = parseAllowedPrefixes(p.participantOrigins);
  const urlPolicy: UrlPolicyContext = {
    allowed,
    internalRefused: internalRefused(!isLoopbackName(config.server.host), allowed),
    reachesCommitd: (url) => commitdOrigins.reaches(url),
  };
  const http = new HttpParticipants({
    urlPolicy,
    prepareTimeoutMs: p.prepareTimeoutMs,
    phaseTwoTimeoutMs: p.phaseTwoTimeoutMs,
    connectionsPerOrigin: p.connectionsPerOrigin,
    callsInFlightMax: p.maxCallsInFlight,
    keepAliveTimeoutMs: p.keepAliveTimeoutMs,
    answerBytesMax: p.maxAnswerBytes,
    callsPerOriginMax: p.maxCallsPerOrigin,
    signingSecret: p.signingSecret,
    onCall,
    participantSecrets: parseParticipantSecrets(p.participantSecrets),
    tls: participantTls,
  });
  const adapters = new Map<string, DatabaseAdapter>();
  for (const d of config.databases) {
    const options = {
      name: d.name,
      url: d.url,
      poolSize: d.poolSize,
      callTimeoutMs: p.phaseTwoTimeoutMs,
      deployment: deploymentId,
    };
    adapters.set(
      d.name,
      d.kind === 'postgres'
        ? new PostgresAdapter({ ...options, onError: (e) => report.error(e, `database '${d.name}'`) })
        : new MysqlAdapter(options),
    );
  }
  const databases = new DatabaseParticipants(adapters, {
    prepareTimeoutMs: p.prepareTimeoutMs,
    phaseTwoTimeoutMs: p.phaseTwoTimeoutMs,
    callsInFlightMax: p.maxCallsInFlight,
    onCall,
  });
  const participants = new RoutingParticipants(http, databases);
  const t = config.transactions;
  const coordinator = new Coordinator({
    log,
    participants,
    observer: metricsObserver(metrics, report.heuristic),
    defaultTimeoutMs: t.defaultTimeoutMs,
    inFlightMax: t.maxInFlight,
    inFlightBytesMax: t.maxInFlightBytes,
    inFlightPerCallerMax: callerShare(t.maxInFlightPerCaller, t.maxInFlight),
    inFlightBytesPerCallerMax: callerShare(t.maxInFlightBytesPerCaller, t.maxInFlightBytes),
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
    ...(member ? { placement: member } : {}),
  });
  coordinatorRef = coordinator;
  metrics.inFlightSource = () => coordinator.reads.inFlightByState();
  const orphans = new OrphanScanner({
    adapters: [...adapters.values()],
    deployment: deploymentId,
    verdictOf: (txId, participant, database, presumeAbort) =>
      orphanVerdict(coordinator.reads, txId, participant, database, presumeAbort),
    scanIntervalMs: p.orphanScanIntervalMs,
    safetyIntervalMs: p.orphanSafetyIntervalMs,
    maxPerScan: ORPHANS_PER_SCAN_MAX,
    onError: report.error,
    onRolledBack: (database, found) => {
      void aboutTransaction(coordinator, found.txId).then((about) =>
        report.orphan?.(`orphan scan: rolled back ${found.txId}/${found.participant} in database '${database}'`, about),
      );
    },
  });
  return { log, member, participants, coordinator, orphans, deploymentId, urlPolicy, commitdOrigins, peerCa };
}

/**
 * The store's deployment identity: the configured one, or a random one (64
 * bits: two deployments never draw the same), kept by the store the first
 * time; a configured one the store does not hold is refused, since the names
 * already prepared under the kept one would no longer be found.
 */
async function claimDeploymentId(log: DecisionLog, configured: string | null): Promise<string> {
  let kept: string;
  try {
    kept = await log.claimDeploymentId(configured ?? randomBytes(8).toString('hex'));
  } catch (error) {
    await log.close();
    throw error;
  }
  if (configured !== null && kept !== configured) {
    await log.close();
    throw new ConfigError(
      `participants.deploymentId (COMMITD_DEPLOYMENT_ID) is '${configured}', but the decision store belongs to deployment '${kept}': ` +
        'transactions prepared in databases carry that name; unset the setting or set it to the kept one',
    );
  }
  return kept;
}

/** The PostgreSQL store when a store URL is configured, else the SQLite log in the data directory. */
async function openLog(
  config: Config,
  metrics: Metrics,
  readiness: Readiness,
  report: Reporting,
  fence: Fence | undefined,
): Promise<DecisionLog> {
  const common = {
    batchRecordsMax: config.log.maxBatchRecords,
    lazyFlushDelayMs: config.log.lazyFlushDelayMs,
    onFlush: (s: FlushStats) => {
      readiness.logWritable = true;
      metrics.logFlushDuration.observe(s.durationMs / 1000);
      metrics.logFlushRecords.observe(s.records);
    },
    onError: (e: Error) => {
      readiness.logWritable = false;
      metrics.logErrors.inc();
      report.logError(e);
    },
  };
  if (config.log.storeUrl !== null) {
    return PostgresLog.open({
      ...common,
      url: config.log.storeUrl,
      schema: config.log.storeSchema,
      ...(fence ? { fence } : {}),
    });
  }
  return new SqliteLog({
    ...common,
    dataDir: config.server.dataDir,
    onSync: (s) => {
      metrics.logFsyncs.inc();
      metrics.logFsyncDuration.observe(s.durationMs / 1000);
    },
    onFatal: report.fatal,
  });
}

/** An orphan's transaction, with its trace when commitd still knows it (an orphan's is often forgotten). */
async function aboutTransaction(coordinator: Coordinator, txId: string): Promise<AboutTransaction> {
  let traceParent: string | null = null;
  try {
    traceParent = (await coordinator.reads.get(txId)).traceParent;
  } catch {
    // Unknown: presumed abort, and no trace to name.
  }
  return { txId, traceId: traceIdOf(traceParent) };
}

/** An instance's name in the cluster: its host (for people) and random (a restart is another instance). */
function instanceId(): string {
  const host =
    hostname()
      .replace(/[^A-Za-z0-9.-]/g, '')
      .slice(0, 40) || 'commitd';
  return `${host}-${Math.random().toString(36).slice(2, 10)}`;
}

function clusterObserver(metrics: Metrics, report: Reporting): ClusterObserver {
  return {
    shardsOwned: (count) => metrics.shardsOwned.set(count),
    taken: (reason, shards) => metrics.shardChanges.inc({ change: reason }, shards),
    released: (shards) => metrics.shardChanges.inc({ change: 'released' }, shards),
    lost: (shards) => metrics.shardChanges.inc({ change: 'lost' }, shards),
    peerGone: (instance, why) => report.error(new Error(`instance ${instance} is gone: ${why}`), 'the cluster'),
    stalled: (gapMs, leasesRunOut) =>
      report.warn?.(
        `this instance did not run for ${Math.round(gapMs)} ms (paused, or starved of CPU): ` +
          (leasesRunOut > 0
            ? `the leases of ${leasesRunOut} of its shards ran out meanwhile; it lets them go (another instance may have taken them over) and takes shards again as the plan says`
            : 'its leases held'),
        { gapMs: Math.round(gapMs), leasesRunOut },
      ),
  };
}

/** The coordinator's reports as Prometheus metrics, heuristics also as a log line an operator sees. */
function metricsObserver(
  metrics: Metrics,
  logHeuristic: (message: string, about: AboutTransaction) => void,
): CoordinatorObserver {
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
      logHeuristic(
        `participant ${r.participant} reports heuristic ${r.heuristic} for ${r.txId}, decided ${r.decided}`,
        {
          txId: r.txId,
          traceId: r.traceId,
        },
      );
    },
    recovered: (count) => metrics.recovered.inc(count),
    compacted: (count) => metrics.compacted.inc(count),
    stuckParticipants: (count) => metrics.stuckParticipants.set(count),
    unresolvedHeuristics: (count) => metrics.heuristicsUnresolved.set(count),
    oldestUnfinishedAgeSeconds: (seconds) => metrics.oldestUnfinishedAge.set(seconds),
    operatorAction: (action) => metrics.operatorActions.inc({ action }),
  };
}
