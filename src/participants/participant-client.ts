import type { Heuristic, MessageSpec, PhaseTwoMessage, PublishReceipt, Vote } from '../protocol/types.js';

/**
 * Whom a call goes to: an HTTP endpoint (url), a configured database
 * (database) or the message broker (message), exactly one of the three.
 */
export interface ParticipantTarget {
  readonly name: string;
  readonly url: string | null;
  readonly database: string | null;
  readonly message?: MessageSpec | null;
  /** Participant.preparedId: what the vote saw of a database participant's prepared transaction. */
  readonly preparedId?: string | null;
}

export type PrepareAnswer =
  | {
      readonly kind: 'vote';
      readonly vote: Vote;
      readonly reason: string | null;
      /** Participant.preparedId, with a database participant's `yes`. */
      readonly preparedId?: string;
    }
  /** No usable answer: counts as `no`, and the participant may be prepared. */
  | { readonly kind: 'lost'; readonly reason: string };

export type PhaseTwoAnswer =
  /** `receipt`: where the broker stored a message participant's message. */
  | { readonly kind: 'acknowledged'; readonly receipt?: PublishReceipt }
  | { readonly kind: 'heuristic'; readonly heuristic: Heuristic }
  | { readonly kind: 'failed'; readonly error: string };

/**
 * How the coordinator talks to participants. Implementations never throw: a
 * participant's failure is an answer the protocol handles. `traceParent`:
 * the W3C traceparent of the call's span (tracing/transaction-trace.ts), sent
 * by the HTTP client; null or absent when there is no trace.
 */
export interface ParticipantClient {
  prepare(
    txId: string,
    target: ParticipantTarget,
    payloadJson: string | null,
    traceParent?: string | null,
  ): Promise<PrepareAnswer>;
  deliver(
    message: PhaseTwoMessage,
    txId: string,
    target: ParticipantTarget,
    traceParent?: string | null,
  ): Promise<PhaseTwoAnswer>;
  close(): Promise<void>;
}
