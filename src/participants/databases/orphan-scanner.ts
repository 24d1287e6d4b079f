// Recovery on the databases' side: at start and periodically, every
// configured database is scanned for prepared transactions carrying commitd's
// names. Those commitd itself is finishing (a decided transaction whose
// participant has not acknowledged: the coordinator sends the decision, again
// after every restart) and those of undecided transactions are never touched.
// Every other one is an orphan nobody voted on (its transaction aborted, or
// unknown to commitd: presumed abort; or prepared again after its
// participant was finished) and is rolled back once it has been prepared for
// the safety interval. This is what finishes a transaction a service prepared
// after commitd had already counted its vote as `no`.
//
// Only this deployment's names are looked at (the adapters list only those,
// and the scan skips any other one listed): another deployment sharing the server has
// transactions this one's log knows nothing of, and presumed abort would
// roll back its decided work. A name an older build prepared carries no
// deployment: it is finished when this log knows its transaction, but never
// rolled back as unknown, since it may be another deployment's.

import type { DatabaseAdapter, PreparedTransaction } from './database-adapter.js';

/**
 * What commitd says of one prepared transaction: `leave` it (undecided, or
 * commitd is finishing it), or it is an `orphan` (presumed abort).
 */
export type OrphanVerdict = 'leave' | 'orphan';

export type OrphanAction = 'leave' | 'wait' | 'rollback';

/**
 * The rule, apart from any I/O. `ageMs` is how long the transaction has been
 * prepared (or seen prepared, where the database does not say).
 */
export function orphanAction(verdict: OrphanVerdict, ageMs: number, safetyIntervalMs: number): OrphanAction {
  if (verdict === 'leave') return 'leave';
  return ageMs >= safetyIntervalMs ? 'rollback' : 'wait';
}

export interface OrphanScannerOptions {
  readonly adapters: readonly DatabaseAdapter[];
  /** This deployment's identity: a name carrying another one is never touched. */
  readonly deployment: string;
  /**
   * commitd's verdict on one participant's prepared transaction (built on
   * Coordinator.outcome): found in `database`, or somewhere on its server
   * when `database` is null (XA RECOVER cannot say which database).
   * `presumeAbort`: an unknown transaction is an orphan; false for a name
   * without a deployment, which may be another deployment's.
   */
  readonly verdictOf: (
    txId: string,
    participant: string,
    database: string | null,
    presumeAbort: boolean,
  ) => Promise<OrphanVerdict>;
  readonly scanIntervalMs: number;
  readonly safetyIntervalMs: number;
  /** Most prepared transactions looked at per database per scan. */
  readonly maxPerScan: number;
  readonly onError: (error: Error, context: string) => void;
  /** Told of every orphan the scan rolled back. */
  readonly onRolledBack?: (database: string, found: PreparedTransaction) => void;
  readonly now?: () => number;
}

export interface ScanReport {
  rolledBack: number;
  waiting: number;
  left: number;
  failed: number;
}

export class OrphanScanner {
  /** database -> (txId NUL participant) -> when this process first saw it prepared. */
  private readonly firstSeenMs = new Map<string, Map<string, number>>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<ScanReport> | null = null;
  private stopped = false;
  private readonly now: () => number;

  constructor(private readonly o: OrphanScannerOptions) {
    this.now = o.now ?? Date.now;
  }

  /** Scans now, then every scanIntervalMs until stop. Call once the coordinator has recovered. */
  start(): void {
    if (this.o.adapters.length === 0) return;
    const tick = () => {
      this.timer = null;
      if (this.stopped) return;
      this.scan()
        .catch((error) => this.o.onError(error as Error, 'scanning databases for prepared transactions'))
        .finally(() => {
          if (!this.stopped) this.timer = setTimeout(tick, this.o.scanIntervalMs).unref();
        });
    };
    tick();
  }

  /** One pass over every database; a scan already running is joined, not doubled. */
  scan(): Promise<ScanReport> {
    if (this.running) return this.running;
    const run = this.scanAll().finally(() => {
      this.running = null;
    });
    this.running = run;
    return run;
  }

  private async scanAll(): Promise<ScanReport> {
    const report: ScanReport = { rolledBack: 0, waiting: 0, left: 0, failed: 0 };
    for (const adapter of this.o.adapters) {
      if (this.stopped) break;
      try {
        await this.scanOne(adapter, report);
      } catch (error) {
        report.failed++;
        this.o.onError(error as Error, `scanning database '${adapter.name}' for prepared transactions`);
      }
    }
    return report;
  }

  private async scanOne(adapter: DatabaseAdapter, report: ScanReport): Promise<void> {
    const found = await adapter.listPrepared(this.o.maxPerScan);
    const nowMs = this.now();
    const before = this.firstSeenMs.get(adapter.name) ?? new Map<string, number>();
    // Only what this scan saw is kept: the map never outgrows one listing.
    const seen = new Map<string, number>();
    for (const t of found) {
      if (t.deployment !== null && t.deployment !== this.o.deployment) continue;
      const key = `${t.txId}\0${t.participant}`;
      const firstSeenMs = before.get(key) ?? nowMs;
      seen.set(key, firstSeenMs);
      const ageMs = t.ageMs ?? nowMs - firstSeenMs;
      const action = orphanAction(
        await this.o.verdictOf(
          t.txId,
          t.participant,
          adapter.listsWholeServer ? null : adapter.name,
          t.deployment !== null,
        ),
        ageMs,
        this.o.safetyIntervalMs,
      );
      if (action === 'leave') report.left++;
      else if (action === 'wait') report.waiting++;
      else {
        try {
          // 'absent': someone finished it between the listing and now.
          if ((await adapter.finish('abort', t.txId, t.participant, null)) === 'finished') {
            report.rolledBack++;
            this.o.onRolledBack?.(adapter.name, t);
          }
          seen.delete(key);
        } catch (error) {
          // The next scan tries again; one failure does not stop the others.
          report.failed++;
          this.o.onError(error as Error, `rolling back ${t.txId}/${t.participant} in database '${adapter.name}'`);
        }
      }
    }
    this.firstSeenMs.set(adapter.name, seen);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running?.catch(() => {});
  }
}
