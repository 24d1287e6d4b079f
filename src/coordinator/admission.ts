// What new work must fit in: the in-flight limits (undecided transactions,
// per caller, payload and metadata bytes held), counted as live transactions
// change, and the decisions per second the operators' overview shows. A
// begin or an enlist beyond a limit is refused with a 503 and changes nothing.

import type { MessageSpec, NewParticipant, Transaction } from '../protocol/types.js';
import type { CoordinatorOptions } from './contract.js';
import { DecisionRate } from './decision-rate.js';
import { UnavailableError } from './errors.js';

type Limits = Pick<CoordinatorOptions, 'inFlightMax' | 'inFlightPerCallerMax' | 'inFlightBytesMax'>;

export class Admission {
  /** Live transactions with no outcome yet: what the in-flight limit counts. */
  private undecided = 0;
  /** The same, per caller that has any (callers with none are not kept). */
  private readonly undecidedByCaller = new Map<string, number>();
  /** Payload and metadata characters held by live transactions (payloads are dropped at the decision). */
  private heldBytes = 0;
  readonly decisionRate: DecisionRate;

  constructor(
    private readonly limits: Limits,
    monotonicMs: () => number,
  ) {
    this.decisionRate = new DecisionRate(monotonicMs);
  }

  /** Refuses (503) a begin the limits leave no room for. `callerId` '' counts against no per-caller limit. */
  admitBegin(callerId: string, participants: readonly NewParticipant[], metadataJson: string | null): void {
    const { inFlightMax, inFlightPerCallerMax } = this.limits;
    // Transactions that only deliver phase two (a participant unreachable
    // for hours) keep being retried but hold no capacity new work needs.
    if (this.undecided >= inFlightMax) {
      throw new UnavailableError(`${inFlightMax} undecided transactions in flight, the configured limit`, 1);
    }
    if (
      inFlightPerCallerMax > 0 &&
      callerId !== '' &&
      (this.undecidedByCaller.get(callerId) ?? 0) >= inFlightPerCallerMax
    ) {
      throw new UnavailableError(
        `${inFlightPerCallerMax} undecided transactions of this caller in flight, its limit`,
        1,
      );
    }
    this.reserveBytes(requestBytes(participants, metadataJson));
  }

  /** Refuses (503) a participant whose payload would take the bytes held past their bound. */
  admitEnlist(participant: NewParticipant): void {
    this.reserveBytes(requestBytes([participant], null));
  }

  /** A live transaction changed (null: it came into memory, or left it). */
  account(callerId: string, before: Transaction | null, after: Transaction | null): void {
    const undecidedDelta = (after?.outcome === null ? 1 : 0) - (before?.outcome === null ? 1 : 0);
    this.undecided += undecidedDelta;
    if (undecidedDelta !== 0 && callerId !== '') {
      const count = (this.undecidedByCaller.get(callerId) ?? 0) + undecidedDelta;
      if (count > 0) this.undecidedByCaller.set(callerId, count);
      else this.undecidedByCaller.delete(callerId);
    }
    this.heldBytes += heldBytes(after) - heldBytes(before);
    if (before !== null && before.outcome === null && after?.outcome != null) this.decisionRate.decided(after.outcome);
  }

  private reserveBytes(bytes: number): void {
    const max = this.limits.inFlightBytesMax;
    if (this.heldBytes + bytes > max) {
      throw new UnavailableError(`${max} bytes of payload and metadata in flight, the configured limit`, 1);
    }
  }
}

/** Payload and metadata a transaction holds in memory, as JSON characters (about bytes). */
function heldBytes(tx: Transaction | null): number {
  return tx === null ? 0 : requestBytes(tx.participants, tx.metadataJson);
}

/** A message participant's message counts too: it stays in memory until published. */
function requestBytes(
  participants: readonly { payloadJson: string | null; message?: MessageSpec | null }[],
  metadataJson: string | null,
): number {
  let bytes = metadataJson?.length ?? 0;
  for (const p of participants) bytes += (p.payloadJson?.length ?? 0) + (p.message?.dataJson.length ?? 0);
  return bytes;
}
