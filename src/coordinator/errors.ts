// Errors a caller can cause, each mapped by the API to one problem type.

export class NotFoundError extends Error {
  override name = 'NotFoundError';
}

/**
 * The answer for an id the caller cannot see: the same for one that does not
 * exist and for another caller's, so that the answer says nothing of which.
 */
export function noTransaction(id: string): NotFoundError {
  return new NotFoundError(`no transaction ${id}`);
}

/** The request cannot be served now (starting, shutting down, at a limit): retry later. */
export class UnavailableError extends Error {
  override name = 'UnavailableError';
  constructor(
    message: string,
    readonly retryAfterS: number,
    /**
     * What any caller may read when the message holds more (a store's
     * network error, naming its address): the rest is for the log and for
     * admin tokens. Null: the message says nothing internal.
     */
    readonly publicMessage: string | null = null,
  ) {
    super(message);
  }
}

/**
 * The transaction is another instance's (several instances on one store), or
 * (`txId` null) this instance cannot begin one now, owning no shard: the API
 * forwards the call to `url`, or, when nobody is known to take it right now
 * (ownership moving), answers 503 with Retry-After.
 */
export class ElsewhereError extends Error {
  override name = 'ElsewhereError';
  constructor(
    readonly txId: string | null,
    readonly url: string | null,
  ) {
    const what = txId ?? 'a new transaction';
    super(
      url === null
        ? `${what} is moving to another instance of commitd; retry shortly`
        : `${what} is driven by the instance at ${url}`,
    );
  }
}

/** A request that conflicts with what was asked before (an idempotency key reused for another request). */
export class ConflictError extends Error {
  override name = 'ConflictError';
}

/** A configured limit the request goes beyond. */
export class LimitError extends Error {
  override name = 'LimitError';
}

/** A write the decision log could not make durable: nothing was decided, so the caller may retry. */
export function logUnwritable(error: unknown): UnavailableError {
  const what = 'the decision log cannot be written';
  return new UnavailableError(`${what}: ${(error as Error).message}`, 5, what);
}

/** A read of the decision log failed (a store out of reach): nothing changed, so the caller may retry. */
export function logUnreadable(error: unknown): UnavailableError {
  const what = 'the decision log cannot be read';
  return new UnavailableError(`${what}: ${(error as Error).message}`, 5, what);
}

/** Runs a read of the decision log, its failure a 503 rather than a 500. */
export async function readingLog<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (error) {
    throw logUnreadable(error);
  }
}

/**
 * An invariant failed: a bug in commitd. Stop the process loudly rather than
 * act on a state that breaks atomicity; the log makes the crash safe.
 */
export function crashOnBug(error: Error): never {
  process.nextTick(() => {
    throw error;
  });
  throw error;
}
