// A Coordinator in process for tests that drive it directly (no HTTP): its
// limits wide, its timers real, its sweep out of the way, so what a test
// holds (an fsync, a participant's answer) decides what happens next.

import { type BeginRequest, Coordinator, type CoordinatorOptions } from '../../src/coordinator/coordinator.js';
import type { DecisionLog } from '../../src/log/decision-log.js';
import type { ParticipantClient } from '../../src/participants/participant-client.js';

export function testCoordinator(
  log: DecisionLog,
  participants: ParticipantClient,
  overrides: Partial<CoordinatorOptions> = {},
): Coordinator {
  return new Coordinator({
    log,
    participants,
    defaultTimeoutMs: 30_000,
    inFlightMax: 100,
    inFlightBytesMax: 1_000_000,
    inFlightPerCallerMax: 0,
    inFlightBytesPerCallerMax: 0,
    participantsMax: 8,
    retryDelayMsMin: 10,
    retryDelayMsMax: 100,
    stuckAfterAttempts: 10,
    answerWaitMsMax: 1_000,
    sweepIntervalMs: 60_000,
    idempotencyKeyRetentionMs: 60_000,
    retentionMs: 60_000,
    compactionBatchMax: 100,
    recoveryCallsMax: 16,
    ...overrides,
  });
}

/** A begin of one participant, `orders`, with nothing else asked: one-shot when `commit`. */
export function beginRequest(commit: boolean): BeginRequest {
  return {
    participants: [{ name: 'orders', url: 'http://orders.test/tx', database: null, payloadJson: null }],
    timeoutMs: null,
    idempotencyKey: null,
    idempotencyScope: '',
    callerId: '',
    by: null,
    requestHash: null,
    metadataJson: null,
    commit,
  };
}
