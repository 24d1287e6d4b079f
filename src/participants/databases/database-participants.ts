// Database participants (issue 11): the service does its work and prepares it
// in its database under the name commitd gives it; commitd's vote is whether
// that prepared transaction exists, and phase two finishes it from commitd's
// own connections. The payload is not used: the work is already done.

import type { PhaseTwoMessage } from '../../protocol/types.js';
import { CallLimiter } from '../call-limiter.js';
import type { CallRecord } from '../http-participants.js';
import type { ParticipantClient, ParticipantTarget, PhaseTwoAnswer, PrepareAnswer } from '../participant-client.js';
import type { DatabaseAdapter } from './database-adapter.js';

export interface DatabaseParticipantsOptions {
  /** How long a vote waits for the service to prepare before it is `no`. */
  readonly prepareTimeoutMs: number;
  /** A phase-two call still waiting for its turn after this is failed, and retried later. */
  readonly phaseTwoTimeoutMs: number;
  /** Calls to all databases together in flight at once; more wait their turn. */
  readonly callsInFlightMax: number;
  readonly onCall?: (call: CallRecord) => void;
}

/**
 * Delays between looks for a transaction not prepared yet: short first (a
 * service usually prepares before it asks commitd to commit, so the first
 * look finds it), then at most this, so a slow service costs its database a
 * few queries a second, not a busy loop.
 */
const POLL_DELAY_MS_MIN = 2;
const POLL_DELAY_MS_MAX = 50;

export class DatabaseParticipants implements ParticipantClient {
  private readonly limiter: CallLimiter;
  private closed = false;

  constructor(
    private readonly adapters: ReadonlyMap<string, DatabaseAdapter>,
    private readonly options: DatabaseParticipantsOptions,
  ) {
    this.limiter = new CallLimiter(options.callsInFlightMax);
  }

  async prepare(txId: string, target: ParticipantTarget, _payloadJson: string | null): Promise<PrepareAnswer> {
    const startedAt = performance.now();
    const answer = await this.limiter.run(
      (remainingMs) => this.vote(txId, target, remainingMs),
      this.options.prepareTimeoutMs,
      (): PrepareAnswer => ({ kind: 'lost', reason: 'no call slot within the prepare timeout' }),
    );
    const result = answer.kind === 'vote' ? answer.vote : 'lost';
    this.options.onCall?.({ message: 'prepare', result, durationMs: performance.now() - startedAt });
    return answer;
  }

  /**
   * `yes` once the prepared transaction is seen, `no` when every look within
   * the prepare timeout answered that it is not there, and `lost` when the
   * last look failed (the database may hold it prepared: it must hear the
   * abort).
   */
  private async vote(txId: string, target: ParticipantTarget, timeLimitMs: number): Promise<PrepareAnswer> {
    const adapter = this.adapter(target);
    if (adapter === undefined) return { kind: 'lost', reason: `database '${target.database}' is not configured` };
    const deadline = performance.now() + timeLimitMs;
    let delayMs = POLL_DELAY_MS_MIN;
    let lastError: string | null = null;
    while (!this.closed) {
      try {
        const found = await adapter.findPrepared(txId, target.name);
        if (found !== null) {
          return {
            kind: 'vote',
            vote: 'yes',
            reason: null,
            ...(found.preparedId === null ? {} : { preparedId: found.preparedId }),
          };
        }
        lastError = null;
      } catch (error) {
        lastError = describe(error);
      }
      const leftMs = deadline - performance.now();
      if (leftMs <= 0) break;
      await new Promise((resolve) => setTimeout(resolve, Math.min(delayMs, leftMs)));
      delayMs = Math.min(delayMs * 2, POLL_DELAY_MS_MAX);
    }
    if (lastError !== null) return { kind: 'lost', reason: `database '${adapter.name}': ${lastError}` };
    return {
      kind: 'vote',
      vote: 'no',
      reason: `no prepared transaction for '${target.name}' in database '${adapter.name}' within ${this.options.prepareTimeoutMs} ms`,
    };
  }

  async deliver(message: PhaseTwoMessage, txId: string, target: ParticipantTarget): Promise<PhaseTwoAnswer> {
    const startedAt = performance.now();
    const answer = await this.limiter.run(
      () => this.finish(message, txId, target),
      this.options.phaseTwoTimeoutMs,
      (): PhaseTwoAnswer => ({ kind: 'failed', error: 'no call slot within the phase-two timeout' }),
    );
    this.options.onCall?.({ message, result: answer.kind, durationMs: performance.now() - startedAt });
    return answer;
  }

  private async finish(message: PhaseTwoMessage, txId: string, target: ParticipantTarget): Promise<PhaseTwoAnswer> {
    const adapter = this.adapter(target);
    if (adapter === undefined) return { kind: 'failed', error: `database '${target.database}' is not configured` };
    try {
      const result = await adapter.finish(message, txId, target.name, target.preparedId ?? null);
      // Absent: commitd saw it prepared (it voted yes, or the abort follows
      // a vote), so after the decision its absence means it is finished.
      if (result === 'contrary') return { kind: 'heuristic', heuristic: message === 'commit' ? 'abort' : 'commit' };
      return { kind: 'acknowledged' };
    } catch (error) {
      return { kind: 'failed', error: `database '${adapter.name}': ${describe(error)}` };
    }
  }

  private adapter(target: ParticipantTarget): DatabaseAdapter | undefined {
    return target.database === null ? undefined : this.adapters.get(target.database);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.adapters.values()].map((a) => a.close()));
  }
}

function describe(error: unknown): string {
  const e = error as { code?: string; message?: string };
  const text = e?.message ? (e.code ? `${e.code}: ${e.message}` : e.message) : String(error);
  return text.slice(0, 300);
}
