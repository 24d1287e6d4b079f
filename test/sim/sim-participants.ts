// Participants and the network between them and the coordinator. The
// network loses, duplicates, delays (and so reorders) messages and partitions
// participants; participants vote yes, no or read-only, crash (keeping what
// they made durable: they persist before answering), sometimes act and then
// crash before answering, ask the coordinator for outcomes when left
// prepared, and, in some runs, decide heuristically. Every message a
// participant receives is checked against the rules of the protocol.

import type { CallLimiter } from '../../src/participants/call-limiter.js';
import type { ParticipantClient, PhaseTwoAnswer, PrepareAnswer } from '../../src/participants/participant-client.js';
import type { PhaseTwoMessage } from '../../src/protocol/types.js';
import type { Checks } from './checks.js';
import type { SimLog } from './sim-log.js';
import type { World } from './world.js';

export type LocalState = 'prepared' | 'committed' | 'aborted' | 'refused' | 'read-only';

interface Reply {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

export interface Faults {
  enabled: boolean;
  lossRate: number;
  duplicateRate: number;
  longDelayRate: number;
  crashAfterActingRate: number;
}

export interface ParticipantProfile {
  readonly noRate: number;
  readonly readOnlyRate: number;
  /** Chance that a long-prepared participant gives up and aborts on its own. */
  readonly heuristicRate: number;
}

export class SimParticipant {
  readonly states = new Map<string, LocalState>();
  readonly preparedAtMs = new Map<string, number>();
  /** Transactions this participant decided on its own (a heuristic outcome). */
  readonly heuristic = new Set<string>();
  readonly received: Array<{ action: string; txId: string }> = [];
  down = false;
  partitioned = false;

  constructor(
    readonly name: string,
    private readonly world: World,
    private readonly checks: Checks,
    private readonly faults: Faults,
    private readonly profile: ParticipantProfile,
    private readonly peers: () => SimParticipant[],
  ) {}

  get url(): string {
    return `http://${this.name}.sim/tx`;
  }

  /** Handles one message; null when it crashed before answering. */
  handle(action: string, txId: string): Reply | null {
    this.received.push({ action, txId });
    const reply = this.act(action, txId);
    if (this.faults.enabled && this.world.rng.chance(this.faults.crashAfterActingRate)) {
      this.crashFor(this.world.rng.int(20, 400));
      return null;
    }
    return reply;
  }

  private act(action: string, txId: string): Reply {
    const state = this.states.get(txId);
    const rng = this.world.rng;
    switch (action) {
      case 'prepare': {
        if (state === 'prepared' || state === 'committed') return vote('yes');
        if (state === 'refused' || state === 'aborted') return vote('no');
        if (state === 'read-only') return vote('read-only');
        const r = rng.next();
        if (r < this.profile.noRate) return this.set(txId, 'refused', vote('no'));
        if (r < this.profile.noRate + this.profile.readOnlyRate) return this.set(txId, 'read-only', vote('read-only'));
        this.preparedAtMs.set(txId, this.world.now);
        this.scheduleDoubt(txId);
        return this.set(txId, 'prepared', vote('yes'));
      }
      case 'commit':
        if (state === 'committed') return ok();
        if (state === 'aborted' && this.heuristic.has(txId)) return { status: 409, body: { heuristic: 'abort' } };
        if (state !== 'prepared') {
          this.checks.fail('commit goes only to participants that voted yes', `${txId}: ${this.name} was ${state}`);
          return ok();
        }
        return this.set(txId, 'committed', ok());
      case 'abort':
        if (state === 'committed') {
          if (!this.heuristic.has(txId)) {
            this.checks.fail(
              'TCConsistent: no participant commits while another aborts',
              `${txId}: abort after commit at ${this.name}`,
            );
          }
          return { status: 409, body: { heuristic: 'commit' } };
        }
        if (state === 'read-only' || state === 'refused') return ok();
        // Remember the abort even of an unknown transaction, so a late
        // prepare of it votes no (presumed abort asks this of participants).
        this.set(txId, 'aborted', ok());
        return state === undefined ? { status: 404, body: {} } : ok();
      default:
        return { status: 404, body: {} };
    }
  }

  /** Records a local decision and checks it against every other participant. */
  set(txId: string, state: LocalState, reply: Reply): Reply {
    this.states.set(txId, state);
    if (state === 'committed' || state === 'aborted') {
      const contrary = state === 'committed' ? 'aborted' : 'committed';
      for (const peer of this.peers()) {
        if (peer === this || peer.states.get(txId) !== contrary) continue;
        if (this.heuristic.has(txId) || peer.heuristic.has(txId)) continue;
        this.checks.fail(
          'TCConsistent: no participant commits while another aborts',
          `${txId}: ${this.name} ${state}, ${peer.name} ${contrary}`,
        );
      }
    }
    return reply;
  }

  /**
   * Someone other than the coordinator rolls a prepared transaction back (an
   * orphan scan): true if it was prepared. Checked as every local decision is.
   */
  rollBackPrepared(txId: string): boolean {
    if (this.states.get(txId) !== 'prepared') return false;
    this.set(txId, 'aborted', ok());
    return true;
  }

  crashFor(ms: number): void {
    this.down = true;
    this.world.at(ms, () => {
      this.down = false;
    });
  }

  /** A prepared participant that hears nothing asks the coordinator, and may give up heuristically. */
  private scheduleDoubt(txId: string): void {
    this.world.at(this.world.rng.int(300, 900), () => {
      if (this.states.get(txId) !== 'prepared') return;
      if (this.faults.enabled && this.world.rng.chance(this.profile.heuristicRate)) {
        this.heuristic.add(txId);
        this.states.set(txId, 'aborted');
        return;
      }
      this.inquire?.(txId, (outcome) => {
        if (this.states.get(txId) !== 'prepared') return;
        if (outcome === 'commit') this.set(txId, 'committed', ok());
        // Forgotten: rolled back, as the participant kit does (docs/protocol.md
        // says why that is safe); the inquiry check sees if it ever was not.
        if (outcome === 'abort' || outcome === 'forgotten') this.set(txId, 'aborted', ok());
      });
      this.scheduleDoubt(txId);
    });
  }

  /** Set by the simulator: asks the running coordinator over the network. */
  inquire: ((txId: string, answer: (outcome: string) => void) => void) | null = null;
}

export class SimNetwork {
  constructor(
    private readonly world: World,
    private readonly faults: Faults,
  ) {}

  private delay(): number {
    const rng = this.world.rng;
    return this.faults.enabled && rng.chance(this.faults.longDelayRate) ? rng.int(50, 600) : rng.int(1, 8);
  }

  private lost(p: SimParticipant): boolean {
    return this.faults.enabled && (p.partitioned || this.world.rng.chance(this.faults.lossRate));
  }

  /** A request to `p`: delivered (maybe twice), lost, or refused at once when p is down. */
  request(p: SimParticipant, deliver: () => void, refused: () => void): void {
    if (p.down) {
      this.world.at(1, refused);
      return;
    }
    if (this.lost(p)) return;
    const arrive = () => {
      if (!p.down) deliver();
    };
    this.world.at(this.delay(), arrive);
    if (this.faults.enabled && this.world.rng.chance(this.faults.duplicateRate)) this.world.at(this.delay(), arrive);
  }

  reply(p: SimParticipant, receive: () => void): void {
    if (this.lost(p)) return;
    this.world.at(this.delay(), receive);
  }
}

export interface Incarnation {
  alive: boolean;
}

/** The coordinator's participant client for one incarnation of the coordinator process. */
export class SimClient implements ParticipantClient {
  constructor(
    private readonly world: World,
    private readonly network: SimNetwork,
    private readonly participants: Map<string, SimParticipant>,
    private readonly incarnation: Incarnation,
    private readonly log: SimLog,
    private readonly checks: Checks,
    private readonly timeoutMs: number,
    /** The real call-slot queue, on simulated time: calls wait in it, as they do in service. */
    private readonly limiter: CallLimiter,
    /** Planted bug: the time limit counts from when a call got its slot (the wire), not from when it was asked for. */
    private readonly timeFromWire = false,
  ) {}

  /** Set by the simulator: runs right after each message leaves (it may crash the coordinator there). */
  onSent: (action: string) => void = () => {};

  /** One call through the slot queue, its time limit counted from now (queue included). */
  private limited(action: string, txId: string, name: string): Promise<Reply | string> {
    if (this.timeFromWire) {
      return this.limiter.run(
        () => this.call(action, txId, name, this.timeoutMs),
        Number.MAX_SAFE_INTEGER,
        () => '',
      );
    }
    return this.limiter.run(
      (remainingMs) => this.call(action, txId, name, remainingMs),
      this.timeoutMs,
      () => 'timeout while queued',
    );
  }

  async prepare(txId: string, target: { name: string }): Promise<PrepareAnswer> {
    const reply = await this.limited('prepare', txId, target.name);
    if (typeof reply === 'string') return { kind: 'lost', reason: reply };
    const v = reply.body.vote;
    if (reply.status === 200 && (v === 'yes' || v === 'no' || v === 'read-only')) {
      return { kind: 'vote', vote: v, reason: null };
    }
    return { kind: 'lost', reason: `HTTP ${reply.status}` };
  }

  async deliver(message: PhaseTwoMessage, txId: string, target: { name: string }): Promise<PhaseTwoAnswer> {
    // Durable, or durable and since forgotten: an instance that slept
    // through a takeover may resend a commit after the new owner finished it.
    const stored = this.log.durable.get(txId) ?? this.log.forgotten.get(txId);
    if (message === 'commit' && stored?.outcome !== 'commit') {
      this.checks.fail('no commit message leaves before the commit decision is durable', `${txId} to ${target.name}`);
    }
    const reply = await this.limited(message, txId, target.name);
    if (typeof reply === 'string') return { kind: 'failed', error: reply };
    if ((reply.status >= 200 && reply.status < 300) || (message === 'abort' && reply.status === 404)) {
      return { kind: 'acknowledged' };
    }
    const contrary = message === 'commit' ? 'abort' : 'commit';
    if (reply.status === 409 && reply.body.heuristic === contrary) return { kind: 'heuristic', heuristic: contrary };
    return { kind: 'failed', error: `HTTP ${reply.status}` };
  }

  private call(action: string, txId: string, name: string, timeLimitMs: number): Promise<Reply | string> {
    const p = this.participants.get(name);
    if (!p) throw new Error(`no simulated participant ${name}`);
    return new Promise((resolve) => {
      let settled = false;
      // A dead process hears no answers: its promises simply never settle.
      const settle = (v: Reply | string) => {
        if (settled || !this.incarnation.alive) return;
        settled = true;
        resolve(v);
      };
      this.world.at(timeLimitMs, () => settle('timeout'));
      this.network.request(
        p,
        () => {
          const reply = p.handle(action, txId);
          if (reply) this.network.reply(p, () => settle(reply));
        },
        () => settle('connection refused'),
      );
      this.onSent(action);
    });
  }

  async close(): Promise<void> {}
}

function vote(v: string): Reply {
  return { status: 200, body: { vote: v } };
}

function ok(): Reply {
  return { status: 200, body: {} };
}
