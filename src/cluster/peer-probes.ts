// Is another instance still there? Asked of its advertised address, often:
// the fast evidence that lets the others take over long before a lease runs
// out. An address that refuses connections, or answers as another instance
// (restarted on the same port), means gone at once; one that says nothing
// for `silenceMs` (paused, overloaded past use, cut off) means gone too.
// A partition from the store but not from the peers is what probes cannot
// see: the lease is the backstop for that. Silence alone is weaker evidence
// than a refused connection (a partition between instances looks the same
// from each side): the member also asks the store whether the silent one
// still renews its heartbeat (cluster-member.ts).

import { Agent, request } from 'undici';
import { trustingAlso } from '../security/pem-files.js';

export interface ProbeOptions {
  readonly silenceMs: number;
  /** Longest one probe waits for an answer. */
  readonly timeoutMs: number;
  readonly monotonicMs: () => number;
  /** A peer was found gone: the member plans again at once. */
  readonly gone: (instanceId: string, why: string) => void;
  /** The private CA the peers' certificates come from (COMMITD_PEER_CA_FILE), or null. */
  readonly peerCa?: string | null;
}

/** How a peer was found gone: nobody listens at its address (or another instance does), or it said nothing for too long. */
export type GoneKind = 'refused' | 'silent';

interface PeerState {
  url: string;
  lastAnswerMs: number;
  inFlight: boolean;
  gone: GoneKind | null;
}

/** Connection errors that mean nobody listens there (the process is gone). */
const REFUSED = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH']);
/** The probes' own connections: few, short-lived, apart from calls forwarded to the peers. */
const PROBE_CONNECTIONS_PER_PEER = 2;

export class PeerProbes {
  private readonly peers = new Map<string, PeerState>();
  /** When the last round started (monotonic); null before the first. */
  private lastRoundMs: number | null = null;
  private readonly agent: Agent;

  constructor(private readonly o: ProbeOptions) {
    this.agent = new Agent({
      connections: PROBE_CONNECTIONS_PER_PEER,
      pipelining: 0,
      connect: trustingAlso(o.peerCa ?? null),
    });
  }

  /**
   * Probes each of these peers once (one probe in flight per peer); forgets
   * the ones not listed. Settles when the probes started now have (each is
   * bounded by the probe timeout).
   */
  probe(peers: ReadonlyArray<{ readonly id: string; readonly url: string }>): Promise<void> {
    const started: Promise<void>[] = [];
    const now = this.o.monotonicMs();
    // Rounds further apart than the silence bound: this process did not
    // probe meanwhile (it was paused, starved, or waited on the store), so
    // no answer was missed; the silence it would measure is its own. Each
    // peer's silence is counted from now (the member says what happened).
    const ownGap = this.lastRoundMs !== null && now - this.lastRoundMs > this.o.silenceMs;
    this.lastRoundMs = now;
    const listed = new Set(peers.map((p) => p.id));
    for (const id of this.peers.keys()) if (!listed.has(id)) this.peers.delete(id);
    for (const { id, url } of peers) {
      let state = this.peers.get(id);
      if (state === undefined || state.url !== url) {
        // First seen now: silence is counted from here.
        state = { url, lastAnswerMs: now, inFlight: false, gone: null };
        this.peers.set(id, state);
      }
      if (ownGap) state.lastAnswerMs = Math.max(state.lastAnswerMs, now);
      if (state.gone === null && now - state.lastAnswerMs >= this.o.silenceMs) {
        this.markGone(id, state, 'silent', `no answer for ${Math.round(now - state.lastAnswerMs)} ms`);
      }
      // Gone ones are probed too: one wrongly found gone (a long pause) is
      // alive again once it answers as itself.
      if (!state.inFlight) started.push(this.probeOne(id, state));
    }
    return Promise.all(started).then(() => {});
  }

  /** Peers found gone, by id, with how. */
  gone(): Map<string, GoneKind> {
    const gone = new Map<string, GoneKind>();
    for (const [id, state] of this.peers) if (state.gone !== null) gone.set(id, state.gone);
    return gone;
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => {});
  }

  private async probeOne(id: string, state: PeerState): Promise<void> {
    state.inFlight = true;
    try {
      const res = await request(new URL('/healthz', state.url), {
        dispatcher: this.agent,
        // A new connection each time: a refused one is the evidence of a
        // dead peer, and a kept-alive one would hold a stopping peer's
        // server open (it waits for its connections to end).
        reset: true,
        headersTimeout: this.o.timeoutMs,
        bodyTimeout: this.o.timeoutMs,
        signal: AbortSignal.timeout(this.o.timeoutMs),
      });
      const body = (await res.body.json().catch(() => null)) as { instance?: unknown } | null;
      if (res.statusCode === 200 && body?.instance === id) {
        state.lastAnswerMs = this.o.monotonicMs();
        state.gone = null;
      } else if (res.statusCode === 200) {
        this.markGone(id, state, 'refused', `another instance (${String(body?.instance)}) answers there`);
      }
    } catch (error) {
      const code = (error as { code?: string }).code ?? '';
      if (REFUSED.has(code)) this.markGone(id, state, 'refused', `its address refuses connections (${code})`);
      // Otherwise (a timeout): silence, counted by the next round.
    } finally {
      state.inFlight = false;
    }
  }

  private markGone(id: string, state: PeerState, kind: GoneKind, why: string): void {
    if (state.gone === 'refused' || state.gone === kind) return;
    state.gone = kind;
    this.o.gone(id, why);
  }
}
