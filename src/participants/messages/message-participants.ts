// Message participants (issue 21): a message published to NATS JetStream if
// and only if the transaction commits. Phase one asks nobody: the message is
// already on disk with the transaction (the participant's record holds it),
// so the vote is yes and a broker outage never aborts a transaction. Phase
// two publishes it on commit, with a Nats-Msg-Id the broker de-duplicates a
// republish by, and acknowledges on the broker's publish acknowledgement (a
// duplicate's counts: the message is stored). An abort publishes nothing.

import type { PhaseTwoMessage } from '../../protocol/types.js';
import { CallLimiter } from '../call-limiter.js';
import type { CallRecord } from '../http-participants.js';
import type { ParticipantClient, ParticipantTarget, PhaseTwoAnswer, PrepareAnswer } from '../participant-client.js';
import { messageId } from './message-rules.js';
import type { OutgoingMessage, PublishResult } from './nats-broker.js';

/** What publishes: the NATS broker in a service, something else in a test. */
export interface MessagePublisher {
  publish(message: OutgoingMessage, timeoutMs: number): Promise<PublishResult>;
  close(): Promise<void>;
}

export interface MessageParticipantsOptions {
  /** Makes Nats-Msg-Id unique per deployment: two deployments sharing a broker never drop each other's messages. */
  readonly deploymentId: string;
  /** A publish not acknowledged within this failed, and is retried with the coordinator's backoff. */
  readonly publishTimeoutMs: number;
  /** Calls to the broker in flight at once; more wait their turn. */
  readonly callsInFlightMax: number;
  /**
   * A pending message not tried again for this long is no longer driven by
   * this instance (its transaction was handed to another): it stops counting
   * as pending here. Longer than the longest retry delay plus a publish.
   */
  readonly pendingStaleAfterMs: number;
  readonly onCall?: (call: CallRecord) => void;
  /** A message stored by the broker; `pendingMs`: since its first publish attempt by this instance. */
  readonly onPublished?: (pendingMs: number, duplicate: boolean) => void;
}

/**
 * Messages being published and not yet acknowledged are tracked (for the
 * pending count and age) up to this many; past it the gauges undercount
 * rather than grow without bound.
 */
const PENDING_TRACKED_MAX = 100_000;

export class MessageParticipants implements ParticipantClient {
  private readonly limiter: CallLimiter;
  /** msgId -> when this instance first and last tried to publish it (performance.now()). */
  private readonly pending = new Map<string, { firstMs: number; lastMs: number }>();

  constructor(
    /** null: no broker configured (COMMITD_NATS_URL unset); the API refuses message participants then. */
    private readonly publisher: MessagePublisher | null,
    private readonly options: MessageParticipantsOptions,
  ) {
    this.limiter = new CallLimiter(options.callsInFlightMax);
  }

  async prepare(_txId: string, target: ParticipantTarget): Promise<PrepareAnswer> {
    // The message is in the transaction's record, written (forced) at the
    // begin or enlist: nothing to ask of anyone.
    if (!target.message) return { kind: 'lost', reason: `participant '${target.name}' has no message` };
    this.options.onCall?.({ message: 'prepare', result: 'yes', durationMs: 0 });
    return { kind: 'vote', vote: 'yes', reason: null };
  }

  async deliver(message: PhaseTwoMessage, txId: string, target: ParticipantTarget): Promise<PhaseTwoAnswer> {
    // Never published before the commit decision: nothing to take back.
    if (message === 'abort') return { kind: 'acknowledged' };
    const startedAt = performance.now();
    const answer = await this.limiter.run(
      (remainingMs) => this.publish(txId, target, remainingMs),
      this.options.publishTimeoutMs,
      (): PhaseTwoAnswer => ({ kind: 'failed', error: 'no call slot within the phase-two timeout' }),
    );
    this.options.onCall?.({ message, result: answer.kind, durationMs: performance.now() - startedAt });
    return answer;
  }

  private async publish(txId: string, target: ParticipantTarget, timeLimitMs: number): Promise<PhaseTwoAnswer> {
    const m = target.message;
    if (!m) return { kind: 'failed', error: `participant '${target.name}' has no message` };
    if (this.publisher === null) {
      return { kind: 'failed', error: 'no broker configured: set COMMITD_NATS_URL and restart commitd' };
    }
    const msgId = messageId(this.options.deploymentId, txId, target.name);
    const nowMs = performance.now();
    const tracked = this.pending.get(msgId);
    if (tracked !== undefined) tracked.lastMs = nowMs;
    else if (this.pending.size < PENDING_TRACKED_MAX) this.pending.set(msgId, { firstMs: nowMs, lastMs: nowMs });
    const result = await this.publisher.publish(
      {
        subject: m.subject,
        body: m.dataJson,
        msgId,
        headers: { ...m.headers, 'Commitd-Transaction-Id': txId, 'Commitd-Participant': target.name },
      },
      timeLimitMs,
    );
    if (!result.ok) return { kind: 'failed', error: result.error };
    const since = this.pending.get(msgId)?.firstMs;
    this.pending.delete(msgId);
    this.options.onPublished?.(since === undefined ? 0 : performance.now() - since, result.duplicate);
    return { kind: 'acknowledged', receipt: { stream: result.stream, seq: result.seq } };
  }

  /** Messages this instance is publishing with no acknowledgement yet, and how long the oldest has waited. */
  pendingNow(): { count: number; oldestSeconds: number } {
    const nowMs = performance.now();
    let oldestMs = nowMs;
    for (const [id, p] of this.pending) {
      if (nowMs - p.lastMs > this.options.pendingStaleAfterMs) this.pending.delete(id);
      else oldestMs = Math.min(oldestMs, p.firstMs);
    }
    return { count: this.pending.size, oldestSeconds: (nowMs - oldestMs) / 1000 };
  }

  async close(): Promise<void> {
    await this.publisher?.close();
  }
}
