// How a running commitd reports what its parts tell it (assemble.ts): lines
// in its log. A line about a transaction carries the transaction's id and
// its trace's id as fields of their own (txId, traceId), so that a log
// search finds every line of a transaction and a trace links to its lines.

import type { Reporting } from './assemble.js';

/** The part of a pino logger (fastify's) used here; console works too before the server's logger exists. */
export interface LineLogger {
  error(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

/**
 * Reporting into `logger()`, asked at every line (main swaps console for
 * the server's logger once it exists). `fatal`: an fsync of the log failed.
 */
export function logReporting(logger: () => LineLogger, fatal: Reporting['fatal']): Reporting {
  return {
    logError: (e) => logger().error({ err: e }, 'writing the decision log failed'),
    error: (e, context, about) => logger().error({ err: e, ...about }, context),
    warn: (message, fields) => logger().warn(fields, message),
    heuristic: (message, about) => logger().warn(about, message),
    orphan: (message, about) => logger().warn(about, message),
    fatal,
  };
}
