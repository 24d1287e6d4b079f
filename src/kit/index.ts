// commitd/participant: the participant kit. This entry loads only node
// built-ins and undici (for the outcome inquiry); the stores and the fastify
// plugin are their own entries (commitd/participant/sqlite, /pg, /fastify),
// and even those use better-sqlite3, pg and fastify only through the objects
// the service passes in.

export { type NodeHandler, type NodeHandlerOptions, nodeHandler } from './node-handler.js';
export {
  createParticipant,
  type FinishContext,
  type KitHandler,
  type KitRequest,
  type KitResponse,
  type MessageEvent,
  Participant,
  type ParticipantHooks,
  type ParticipantOptions,
  type PrepareContext,
  type PrepareResult,
  type PrepareReturn,
} from './participant.js';
export { type Action, decide, type Step } from './protocol.js';
export {
  DEFAULT_SIGNATURE_WINDOW_MS,
  SIGNATURE_HEADER,
  type SignedRequest,
  signV1,
  TIMESTAMP_HEADER,
  TRANSACTION_HEADER,
  type Verdict,
  verifySignature,
} from './signature.js';
export type { ParticipantStore, RecordState, TxKey, TxRecord, Vote } from './store.js';
