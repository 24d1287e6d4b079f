// JSON schemas of every route: requests are validated before any handler runs
// (unknown fields refused, no type coercion), and responses are serialized
// from these schemas. They also make the OpenAPI document at /docs/json.

import { type Config, DATABASE_NAME_PATTERN } from '../config.js';
import { TX_ID_PATTERN } from '../coordinator/ids.js';
import {
  HEADER_VALUE_LENGTH_MAX,
  HEADERS_COUNT_MAX,
  SUBJECT_LENGTH_MAX,
} from '../participants/messages/message-rules.js';
import { PARTICIPANT_NAME_PATTERN, TX_STATES } from '../protocol/types.js';

const URL_MAX_LENGTH = 2048;
const IDEMPOTENCY_KEY_MAX_LENGTH = 255;

const STATES = [...TX_STATES];

export const problemSchema = {
  $id: 'problem',
  type: 'object',
  description: 'RFC 9457 problem details',
  properties: {
    type: { type: 'string' },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
  },
  required: ['type', 'title', 'status', 'detail'],
  additionalProperties: true,
} as const;

export const transactionSchema = {
  $id: 'transaction',
  type: 'object',
  properties: {
    id: { type: 'string', pattern: TX_ID_PATTERN },
    state: { type: 'string', enum: STATES },
    outcome: { type: ['string', 'null'], enum: ['commit', 'abort', null] },
    mixedOutcome: {
      type: 'boolean',
      description:
        'extension: true when some participant reported a heuristic outcome contrary to `outcome` ' +
        '(it committed or rolled back on its own): the effects are not atomic and need a person',
    },
    createdAt: { type: 'string', format: 'date-time' },
    deadline: { type: 'string', format: 'date-time' },
    decidedAt: { type: ['string', 'null'], description: 'extension: when the outcome was decided' },
    finishedAt: { type: ['string', 'null'], description: 'extension: when every participant had its outcome' },
    abortReason: {
      type: ['string', 'null'],
      enum: ['client', 'vote', 'deadline', 'recovery', 'operator', null],
      description: 'extension: why an abort was decided (`operator`: an admin aborted it)',
    },
    idempotencyKey: { type: ['string', 'null'] },
    metadata: { description: 'the metadata object given at begin, or null' },
    participants: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          name: { type: 'string' },
          url: { type: 'string', description: 'an HTTP participant: its base url' },
          database: { type: 'string', description: 'a database participant: the configured database' },
          message: {
            type: 'object',
            description: 'a message participant: where its message goes, and where the broker stored it once published',
            properties: {
              subject: { type: 'string' },
              stream: { type: ['string', 'null'], description: 'the stream that stored it (null: not published)' },
              seq: {
                type: ['integer', 'null'],
                description: 'its sequence number in that stream (null: not published)',
              },
            },
            required: ['subject', 'stream', 'seq'],
          },
          xid: {
            type: ['string', 'null'],
            description:
              "a database participant: its prepared transaction's name there (PostgreSQL gid, or XA xid as written after XA START)",
          },
          vote: { type: ['string', 'null'], enum: ['yes', 'no', 'read-only', null] },
          acknowledged: { type: 'boolean' },
          heuristic: { type: 'string', enum: ['commit', 'abort'] },
          reason: { type: 'string', description: 'extension: why the vote was no' },
          attempts: { type: 'integer', description: 'extension: failed phase-two attempts since the last start' },
          lastError: { type: 'string', description: 'extension: the last phase-two failure' },
          heuristicResolved: {
            type: 'object',
            description: 'extension: an operator resolved this heuristic outcome by hand',
            properties: {
              at: { type: 'string', format: 'date-time' },
              note: { type: 'string' },
              by: { type: ['string', 'null'], description: "the resolving token's id" },
            },
            required: ['at', 'note', 'by'],
          },
        },
        required: ['name', 'vote', 'acknowledged'],
      },
    },
  },
  required: ['id', 'state', 'outcome', 'mixedOutcome', 'createdAt', 'deadline', 'participants'],
} as const;

const txRef = { $ref: 'transaction#' };
const problemRef = { $ref: 'problem#' };

export const idParams = {
  type: 'object',
  properties: { id: { type: 'string', pattern: TX_ID_PATTERN } },
  required: ['id'],
  additionalProperties: false,
} as const;

function participantSchema(config: Config) {
  return {
    type: 'object',
    additionalProperties: false,
    // Exactly one of url and database: checked in the handler, which can say so plainly.
    required: ['name'],
    properties: {
      name: { type: 'string', pattern: PARTICIPANT_NAME_PATTERN },
      url: { type: 'string', maxLength: URL_MAX_LENGTH, pattern: '^[Hh][Tt][Tt][Pp][Ss]?://' },
      database: {
        type: 'string',
        pattern: DATABASE_NAME_PATTERN.source,
        description: 'a configured database holding the prepared transaction, instead of url',
      },
      payload: {
        description: `any JSON value handed to the participant with prepare; at most ${config.transactions.maxPayloadBytes} bytes`,
      },
      message: {
        type: 'object',
        additionalProperties: false,
        required: ['subject', 'data'],
        description:
          'a message participant, instead of url or database: published to NATS JetStream when the transaction commits, ' +
          `never when it aborts (needs COMMITD_NATS_URL); data and headers together at most ${config.transactions.maxPayloadBytes} bytes`,
        properties: {
          subject: { type: 'string', maxLength: SUBJECT_LENGTH_MAX, description: 'a NATS subject, no wildcards' },
          data: { description: "any JSON value: the message's body is exactly its JSON" },
          headers: {
            type: 'object',
            maxProperties: HEADERS_COUNT_MAX,
            additionalProperties: { type: 'string', maxLength: HEADER_VALUE_LENGTH_MAX },
          },
        },
      },
    },
  } as const;
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, problemRef]));

export function beginSchema(config: Config) {
  const t = config.transactions;
  return {
    summary: 'Begin a transaction (with "commit": true, run the whole two-phase commit)',
    body: {
      type: 'object',
      additionalProperties: false,
      properties: {
        participants: { type: 'array', maxItems: t.maxParticipants, items: participantSchema(config) },
        timeoutMs: { type: 'integer', minimum: t.timeoutMsMin, maximum: t.timeoutMsMax },
        idempotencyKey: {
          type: 'string',
          minLength: 1,
          maxLength: IDEMPOTENCY_KEY_MAX_LENGTH,
          // No control characters: keys are stored joined to their caller's scope by one.
          // No lone surrogates: UTF-8 cannot hold one, so neither store keeps it
          // as sent (PostgreSQL stores U+FFFD, and finds the key spelled with
          // it; SQLite reads it back as three U+FFFD).
          pattern: '^[^\\u0000-\\u001f\\u007f\\ud800-\\udfff]+$',
        },
        metadata: { type: 'object', description: `at most ${t.maxMetadataBytes} bytes as JSON` },
        commit: { type: 'boolean' },
      },
    },
    response: { 200: txRef, 201: txRef, 202: txRef, ...errors(400, 401, 403, 409, 413, 415, 503) },
  };
}

export function enlistSchema(config: Config) {
  return {
    summary: 'Enlist one more participant while the transaction is active',
    params: idParams,
    body: participantSchema(config),
    response: { 200: txRef, 201: txRef, ...errors(400, 401, 403, 404, 409, 413, 415, 503) },
  };
}

export function actionSchema(summary: string) {
  return {
    summary,
    params: idParams,
    response: { 200: txRef, 202: txRef, ...errors(400, 401, 403, 404, 409, 503) },
  };
}

export const getSchema = {
  summary: 'Read a transaction',
  params: idParams,
  response: { 200: txRef, ...errors(400, 401, 403, 404, 503) },
};

export const outcomeSchema = {
  summary:
    'Participant inquiry: the durable outcome (unknown ids are presumed aborted; forgotten: finished and its outcome no longer kept)',
  params: idParams,
  response: {
    200: {
      type: 'object',
      properties: { outcome: { type: 'string', enum: ['commit', 'abort', 'pending', 'forgotten'] } },
      required: ['outcome'],
    },
    ...errors(400, 401, 403, 503),
  },
};

export function listSchema(config: Config) {
  return {
    summary: 'List transactions, newest first',
    querystring: {
      type: 'object',
      additionalProperties: false,
      properties: {
        state: { type: 'string', enum: STATES },
        // Query values are strings: validated as digits, bounded in the handler.
        limit: { type: 'string', pattern: '^[0-9]{1,6}$', description: `1 to ${config.transactions.listLimitMax}` },
        after: { type: 'string', pattern: TX_ID_PATTERN, description: 'the `next` cursor of the previous page' },
        stuck: {
          type: 'string',
          enum: ['true', 'false'],
          description: 'extension: only transactions with a participant stuck in phase two now',
        },
        heuristic: {
          type: 'string',
          enum: ['unresolved'],
          description: 'extension: only transactions with a contradicting heuristic outcome nobody resolved',
        },
        olderThanMs: {
          type: 'string',
          pattern: '^[0-9]{1,12}$',
          description: 'extension: only transactions created more than this many milliseconds ago',
        },
        participant: {
          type: 'string',
          pattern: PARTICIPANT_NAME_PATTERN,
          description: 'extension: only transactions with a participant of this name',
        },
      },
    },
    response: {
      200: {
        type: 'object',
        properties: { transactions: { type: 'array', items: txRef }, next: { type: ['string', 'null'] } },
        required: ['transactions', 'next'],
      },
      ...errors(400, 401, 403, 503),
    },
  };
}

const historyEntrySchema = {
  type: 'object',
  description: 'one thing that happened; `type` says what, and which other fields it has (docs/protocol.md)',
  properties: {
    at: { type: 'string', format: 'date-time' },
    type: {
      type: 'string',
      enum: [
        'begun',
        'enlisted',
        'requested',
        'voted',
        'vote-lost',
        'decided',
        'delivery-failed',
        'acknowledged',
        'heuristic',
        'recovered',
        'finished',
        'operator-retry',
        'heuristic-resolved',
        'truncated',
      ],
    },
  },
  required: ['at', 'type'],
  additionalProperties: true,
} as const;

export const historySchema = {
  summary: "Operators: a transaction's history, oldest first",
  params: idParams,
  response: {
    200: {
      type: 'object',
      properties: {
        transactionId: { type: 'string' },
        entries: { type: 'array', items: historyEntrySchema },
        truncated: {
          type: 'boolean',
          description: 'the bound per transaction was reached: later entries were left out',
        },
      },
      required: ['transactionId', 'entries', 'truncated'],
    },
    ...errors(400, 401, 403, 404, 503),
  },
};

export const retrySchema = {
  summary: 'Operators: resend phase two now to every participant waiting out its backoff',
  params: idParams,
  response: { 200: txRef, 202: txRef, ...errors(400, 401, 403, 404, 409, 503) },
};

export const RESOLVE_NOTE_MAX_LENGTH = 1000;

export const resolveSchema = {
  summary: 'Operators: mark a heuristic outcome as resolved by hand',
  params: idParams,
  body: {
    type: 'object',
    additionalProperties: false,
    properties: {
      note: { type: 'string', minLength: 1, maxLength: RESOLVE_NOTE_MAX_LENGTH },
      participant: { type: 'string', pattern: PARTICIPANT_NAME_PATTERN },
    },
    required: ['note'],
  },
  response: { 200: txRef, ...errors(400, 401, 403, 404, 409, 413, 415, 503) },
};

const countByState = {
  type: 'object',
  properties: Object.fromEntries(STATES.map((s) => [s, { type: 'integer' }])),
  additionalProperties: false,
};

export const statsSchema = {
  summary: 'Operators: what is in flight, how fast decisions go, what needs a person',
  response: {
    200: {
      type: 'object',
      properties: {
        inFlight: countByState,
        decidedPerSecond: {
          type: 'object',
          properties: { commit: { type: 'number' }, abort: { type: 'number' } },
          required: ['commit', 'abort'],
        },
        stuckParticipants: { type: 'integer' },
        unresolvedHeuristics: { type: 'integer' },
        oldestUnfinished: {
          type: ['object', 'null'],
          properties: {
            id: { type: 'string' },
            state: { type: 'string', enum: STATES },
            createdAt: { type: 'string', format: 'date-time' },
            ageMs: { type: 'integer' },
          },
          required: ['id', 'state', 'createdAt', 'ageMs'],
        },
        stuckAfterAttempts: { type: 'integer' },
      },
      required: [
        'inFlight',
        'decidedPerSecond',
        'stuckParticipants',
        'unresolvedHeuristics',
        'oldestUnfinished',
        'stuckAfterAttempts',
      ],
    },
    ...errors(401, 403, 503),
  },
};
