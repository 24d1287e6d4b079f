// Every metric commitd exports, in one place. Each instance has its own
// registry, so tests can run several coordinators in one process.

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

const LATENCY_BUCKETS_S = [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Metrics {
  readonly registry = new Registry();

  readonly transactionsBegun = new Counter({
    name: 'commitd_transactions_begun_total',
    help: 'Transactions begun (durably recorded).',
    registers: [this.registry],
  });

  readonly transactionsDecided = new Counter({
    name: 'commitd_transactions_decided_total',
    help: 'Decisions taken, by outcome and, for aborts, by reason.',
    labelNames: ['outcome', 'reason'] as const,
    registers: [this.registry],
  });

  readonly transactionsFinished = new Counter({
    name: 'commitd_transactions_finished_total',
    help: 'Transactions whose outcome every participant has acknowledged, by outcome.',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });

  /** Set where the coordinator is built: read when Prometheus scrapes, to fill `inFlight`. */
  inFlightSource: (() => ReadonlyMap<string, number>) | null = null;

  readonly inFlight = new Gauge({
    name: 'commitd_transactions_in_flight',
    help: 'Transactions in memory, not yet finished at every participant, by state.',
    labelNames: ['state'] as const,
    registers: [this.registry],
    collect: () => {
      for (const [state, count] of this.inFlightSource?.() ?? []) this.inFlight.set({ state }, count);
    },
  });

  readonly phaseDuration = new Histogram({
    name: 'commitd_phase_duration_seconds',
    help: 'Phase one (prepare: first prepare sent to decision) and phase two (commit/abort: decision to the last acknowledgement).',
    labelNames: ['phase'] as const,
    buckets: LATENCY_BUCKETS_S,
    registers: [this.registry],
  });

  /** Set where the message participants are built: read when Prometheus scrapes. */
  messagesPendingSource: (() => { count: number; oldestSeconds: number }) | null = null;

  readonly messagesPending: Gauge = new Gauge({
    name: 'commitd_messages_pending',
    help: 'Message participants of committed transactions this instance is publishing, not yet acknowledged by the broker.',
    registers: [this.registry],
    collect: (): void => {
      this.messagesPending.set(this.messagesPendingSource?.().count ?? 0);
    },
  });

  readonly messagesPendingOldestAge: Gauge = new Gauge({
    name: 'commitd_messages_pending_oldest_age_seconds',
    help: 'How long the oldest pending message has waited for the broker since its first publish attempt here (0: none).',
    registers: [this.registry],
    collect: (): void => {
      this.messagesPendingOldestAge.set(this.messagesPendingSource?.().oldestSeconds ?? 0);
    },
  });

  readonly messagesPublished = new Counter({
    name: 'commitd_messages_published_total',
    help: 'Messages the broker acknowledged (`duplicate`: it had them already, a republish after a crash or a lost acknowledgement).',
    labelNames: ['duplicate'] as const,
    registers: [this.registry],
  });

  readonly messagePublishLatency = new Histogram({
    name: 'commitd_message_publish_seconds',
    help: "From a message's first publish attempt by this instance to the broker's acknowledgement, retries included.",
    buckets: LATENCY_BUCKETS_S,
    registers: [this.registry],
  });

  readonly participantRequests = new Counter({
    name: 'commitd_participant_requests_total',
    help: 'Calls to participants, by message and result.',
    labelNames: ['message', 'result'] as const,
    registers: [this.registry],
  });

  readonly participantLatency = new Histogram({
    name: 'commitd_participant_request_duration_seconds',
    help: 'Latency of calls to participants, by message.',
    labelNames: ['message'] as const,
    buckets: LATENCY_BUCKETS_S,
    registers: [this.registry],
  });

  readonly heuristics = new Counter({
    name: 'commitd_heuristic_outcomes_total',
    help: 'Participants that reported an outcome contrary to the decision, by what they did.',
    labelNames: ['heuristic'] as const,
    registers: [this.registry],
  });

  readonly stuckParticipants = new Gauge({
    name: 'commitd_participants_stuck',
    help: 'Participants whose phase-two message has failed at least stuckAfterAttempts times in a row.',
    registers: [this.registry],
  });

  readonly heuristicsUnresolved = new Gauge({
    name: 'commitd_heuristics_unresolved',
    help: 'Heuristic outcomes contrary to the decision that no operator has resolved yet.',
    registers: [this.registry],
  });

  readonly oldestUnfinishedAge = new Gauge({
    name: 'commitd_oldest_unfinished_transaction_age_seconds',
    help: 'Age of the oldest transaction not yet finished at every participant; 0 when there is none.',
    registers: [this.registry],
  });

  readonly operatorActions = new Counter({
    name: 'commitd_operator_actions_total',
    help: 'Actions operators took on transactions, by action.',
    labelNames: ['action'] as const,
    registers: [this.registry],
  });

  readonly shardsOwned = new Gauge({
    name: 'commitd_cluster_shards_owned',
    help: 'Shards of transactions this instance owns (several instances on one PostgreSQL store).',
    registers: [this.registry],
  });

  readonly shardChanges = new Counter({
    name: 'commitd_cluster_shard_changes_total',
    help: 'Shards this instance took (by why: free, owner-gone, lease-expired, reclaimed), handed over (released) or lost (fenced out, or its lease lapsed in hand).',
    labelNames: ['change'] as const,
    registers: [this.registry],
  });

  readonly forwardedCalls = new Counter({
    name: 'commitd_cluster_forwarded_calls_total',
    help: 'Calls for transactions another instance drives, forwarded to it, by result (answered, unreachable, moving).',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly logFlushDuration = new Histogram({
    name: 'commitd_log_flush_duration_seconds',
    help: 'Time to write one group-commit batch to the decision log (the fsync after it runs off the event loop).',
    buckets: LATENCY_BUCKETS_S,
    registers: [this.registry],
  });

  readonly logFlushRecords = new Histogram({
    name: 'commitd_log_flush_records',
    help: 'Transaction records carried by one flush of the decision log.',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024],
    registers: [this.registry],
  });

  readonly logFsyncs = new Counter({
    name: 'commitd_log_fsyncs_total',
    help: "fsyncs of the decision log's WAL; each makes every batch written before it durable.",
    registers: [this.registry],
  });

  readonly logFsyncDuration = new Histogram({
    name: 'commitd_log_fsync_duration_seconds',
    help: "Time one fsync of the decision log's WAL took (forced writers wait for it).",
    buckets: LATENCY_BUCKETS_S,
    registers: [this.registry],
  });

  readonly logErrors = new Counter({
    name: 'commitd_log_errors_total',
    help: 'Failed writes to the decision log.',
    registers: [this.registry],
  });

  readonly recovered = new Counter({
    name: 'commitd_recovered_transactions_total',
    help: 'Unfinished transactions found in the log at start and driven on.',
    registers: [this.registry],
  });

  readonly compacted = new Counter({
    name: 'commitd_compacted_transactions_total',
    help: 'Finished transactions forgotten after the retention period.',
    registers: [this.registry],
  });

  constructor(options: { processMetrics: boolean } = { processMetrics: true }) {
    // A series per action from the start, so rate() and alerts see a zero, not nothing.
    for (const action of ['retry', 'abort', 'resolve'] as const) this.operatorActions.inc({ action }, 0);
    if (options.processMetrics) {
      collectDefaultMetrics({ register: this.registry, prefix: 'commitd_' });
      // prom-client also exports each of these sums as a gauge named _total,
      // which Prometheus reserves for counters (promtool check metrics
      // refuses them). The same figure is sum() of the per-type gauge kept.
      for (const kind of ['handles', 'requests', 'resources']) {
        this.registry.removeSingleMetric(`commitd_nodejs_active_${kind}_total`);
      }
    }
  }
}
