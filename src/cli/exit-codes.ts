// What `commitd`'s exit status tells a script, one code per kind of failure,
// from the typed errors of the client. (`commitd serve` keeps the service's
// own codes, src/serve.ts.)

import {
  ConflictError,
  InvalidRequestError,
  NotFoundError,
  TimeoutError,
  TransactionAbortedError,
  UnauthorizedError,
  UnavailableError,
} from '../client/errors.js';

export const EXIT = {
  ok: 0,
  /** Anything not below: a 500, an answer that is not commitd's, a bug. */
  unexpected: 1,
  /** Bad flags or arguments, or commitd answered 400 (an id that cannot be one, a note too long). */
  usage: 2,
  /** No such transaction (404). */
  notFound: 3,
  /** commitd refused the action in the transaction's state (409): abort after a commit decision, retry before one. */
  refused: 4,
  /** No token, an unknown one (401), or one whose role may not do this (403). */
  unauthorized: 5,
  /** commitd could not be reached, was busy or stopping (503, 429), or did not answer in time. */
  unavailable: 6,
} as const;

/** A mistake in the command line, found before anything is sent. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export function exitCodeOf(error: unknown): number {
  if (error instanceof UsageError || error instanceof InvalidRequestError) return EXIT.usage;
  if (error instanceof NotFoundError) return EXIT.notFound;
  if (error instanceof ConflictError || error instanceof TransactionAbortedError) return EXIT.refused;
  if (error instanceof UnauthorizedError) return EXIT.unauthorized;
  if (error instanceof UnavailableError || error instanceof TimeoutError) return EXIT.unavailable;
  return EXIT.unexpected;
}
