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
  AbortReason,
  BeginOptions,
  Caller,
  HeuristicResolution,
  HistoryEntry,
  InquiryOutcome,
  ListOptions,
  NewDatabaseParticipant,
  NewHttpParticipant,
  NewMessageParticipant,
  NewParticipant,
  Outcome,
  ParticipantView,
  Problem,
  ResolveOptions,
  Stats,
  Transaction,
  TransactionHistory,
  TransactionPage,
  TxState,
  Vote,
} from './types.js';
