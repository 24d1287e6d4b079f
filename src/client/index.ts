// commitd/client: the typed client. Loads node built-ins and undici only.

export { type CallOptions, type ClientOptions, CommitdClient, retryAfterMs } from './client.js';
export {
  CommitdError,
  ConflictError,
  InvalidRequestError,
  NotFoundError,
  TimeoutError,
  TransactionAbortedError,
  UnauthorizedError,
  UnavailableError,
} from './errors.js';
export type {
  BeginOptions,
  ListOptions,
  NewParticipant,
  Outcome,
  ParticipantView,
  Problem,
  Transaction,
  TransactionPage,
  TxState,
} from './types.js';
