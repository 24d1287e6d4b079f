// What new work must fit in: the in-flight limits (undecided transactions,
// payload and metadata bytes held, in total and per caller; per caller also
// the decided transactions still owed phase two, the work a caller whose
// participants never answer piles up), counted as live transactions change,
// and the decisions per second the operators' overview shows. A begin or an
// enlist beyond a limit is refused with a 503 and changes nothing.

import type { NewParticipant, Transaction } from '../protocol/types.js';
import type { CoordinatorOptions } from './contract.js';
import { DecisionRate } from './decision-rate.js';
import { UnavailableError } from './errors.js';

type Limits = Pick<
  CoordinatorOptions,
  'inFlightMax' | 'inFlightPerCallerMax' | 'inFlightBytesMax' | 'inFlightBytesPerCallerMax'
>;

/** What one caller holds; callers holding nothing are not kept. */
interface CallerLoad {
  undecided: number;
  /** Decided, not yet finished: phase two still owed to a participant. */
  unfinished: number;
  bytes: number;
}

export class Admission {
  /** Live transactions with no outcome yet: what the in-flight limit counts. */
  private undecided = 0;
  /** Per caller that holds anything. */
  private readonly byCaller = new Map<string, CallerLoad>();
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
    const load = callerId === '' ? undefined : this.byCaller.get(callerId);
    if (inFlightPerCallerMax > 0 && load !== undefined) {
      if (load.undecided >= inFlightPerCallerMax) {
        throw new UnavailableError(
          `${inFlightPerCallerMax} undecided transactions of this caller in flight, its limit`,
          1,
        );
      }
      // Decided work a participant never acknowledges is retried for as long
      // as it takes: one caller's unanswered participants must not pile up
      // without bound either.
      if (load.unfinished >= inFlightPerCallerMax) {
        throw new UnavailableError(
          `${inFlightPerCallerMax} transactions of this caller still delivering their outcome, its limit`,
          1,
        );
      }
    }
    this.reserveBytes(callerId, requestBytes(participants, metadataJson));
  }

  /** Refuses (503) a participant whose payload would take the bytes held past their bound. */
  admitEnlist(callerId: string, participant: NewParticipant): void {
    this.reserveBytes(callerId, requestBytes([participant], null));
  }

  /** A live transaction changed (null: it came into memory, or left it). */
  account(callerId: string, before: Transaction | null, after: Transaction | null): void {
    const undecidedDelta = (after?.outcome === null ? 1 : 0) - (before?.outcome === null ? 1 : 0);
    const unfinishedDelta = (owed(after) ? 1 : 0) - (owed(before) ? 1 : 0);
    const bytesDelta = heldBytes(after) - heldBytes(before);
    this.undecided += undecidedDelta;
    this.heldBytes += bytesDelta;
    if (callerId !== '' && (undecidedDelta !== 0 || unfinishedDelta !== 0 || bytesDelta !== 0)) {
      const load = this.byCaller.get(callerId) ?? { undecided: 0, unfinished: 0, bytes: 0 };
      load.undecided += undecidedDelta;
      load.unfinished += unfinishedDelta;
      load.bytes += bytesDelta;
      if (load.undecided > 0 || load.unfinished > 0 || load.bytes > 0) this.byCaller.set(callerId, load);
      else this.byCaller.delete(callerId);
    }
    if (before !== null && before.outcome === null && after?.outcome != null) this.decisionRate.decided(after.outcome);
  }

  private reserveBytes(callerId: string, bytes: number): void {
    const max = this.limits.inFlightBytesMax;
    if (this.heldBytes + bytes > max) {
      throw new UnavailableError(`${max} bytes of payload and metadata in flight, the configured limit`, 1);
    }
    const perCaller = this.limits.inFlightBytesPerCallerMax;
    if (perCaller > 0 && callerId !== '' && (this.byCaller.get(callerId)?.bytes ?? 0) + bytes > perCaller) {
      throw new UnavailableError(`${perCaller} bytes of payload and metadata of this caller in flight, its limit`, 1);
    }
  }
}

/** Decided and not finished: a participant is still owed its outcome. */
function owed(tx: Transaction | null): boolean {
  return tx !== null && tx.outcome !== null && tx.finishedAtMs === null;
}

/** Payload and metadata a transaction holds in memory, as JSON characters (about bytes). */
function heldBytes(tx: Transaction | null): number {
  return tx === null ? 0 : requestBytes(tx.participants, tx.metadataJson);
}

function requestBytes(participants: readonly { payloadJson: string | null }[], metadataJson: string | null): number {
  let bytes = metadataJson?.length ?? 0;
  for (const p of participants) bytes += p.payloadJson?.length ?? 0;
  return bytes;
}
