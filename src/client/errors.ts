// Every refusal from commitd as a typed error carrying its problem document,
// so callers branch on the class rather than on status codes.

import type { Problem, Transaction } from './types.js';

export class CommitdError extends Error {
  override name = 'CommitdError';
  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    super(`${problem.title}: ${problem.detail}`);
  }
}

/** 409: the transaction aborted (a no vote, a participant that did not answer, its deadline, a client's abort). */
export class TransactionAbortedError extends CommitdError {
  override name = 'TransactionAbortedError';
  constructor(
    status: number,
    problem: Problem,
    readonly transaction: Transaction,
  ) {
    super(status, problem);
  }
}

/** 409 for any other reason: a taken participant name, a transaction no longer active, a commit decision, a reused idempotency key. */
export class ConflictError extends CommitdError {
  override name = 'ConflictError';
  /** The transaction as it stands, when commitd sent it. */
  readonly transaction: Transaction | null;
  constructor(status: number, problem: Problem) {
    super(status, problem);
    this.transaction = (problem.transaction as Transaction | undefined) ?? null;
  }
}

export class NotFoundError extends CommitdError {
  override name = 'NotFoundError';
}

/** 401 (no or unknown token) and 403 (a token without the right). */
export class UnauthorizedError extends CommitdError {
  override name = 'UnauthorizedError';
}

/** 400, 413, 415: the request itself is wrong; repeating it will not help. */
export class InvalidRequestError extends CommitdError {
  override name = 'InvalidRequestError';
}

/** 503 or 429, or commitd could not be reached: try again after `retryAfterMs` (null when unknown). */
export class UnavailableError extends CommitdError {
  override name = 'UnavailableError';
  constructor(
    status: number,
    problem: Problem,
    readonly retryAfterMs: number | null,
    override readonly cause?: unknown,
  ) {
    super(status, problem);
  }
}

/** The call took longer than its timeout, or the caller's AbortSignal fired. */
export class TimeoutError extends CommitdError {
  override name = 'TimeoutError';
}
