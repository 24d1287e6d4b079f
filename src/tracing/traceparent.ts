// The W3C Trace Context `traceparent` header (https://www.w3.org/TR/trace-context/,
// "traceparent Header"), read strictly and written in version 00. Pure
// functions: the rest of commitd keeps the header as an opaque string, and
// only the tracing code (transaction-trace.ts) and the log lines look inside.
//
//   version "-" trace-id "-" parent-id "-" trace-flags
//   00      -  32 lowercase hex, not all 0 - 16 lowercase hex, not all 0 - 2 lowercase hex

/** The length of a version 00 header, and of the part of a later version's header that is read. */
export const TRACEPARENT_LENGTH = 55;

export interface TraceParent {
  /** 32 lowercase hex digits, not all zero. */
  readonly traceId: string;
  /** The caller's span: 16 lowercase hex digits, not all zero. */
  readonly parentId: string;
  /** 8 bits; bit 0 is "sampled". */
  readonly traceFlags: number;
}

const VERSION_00 = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
/**
 * A later version: the spec asks a parser to read what version 00 defines
 * from the first 55 characters when the rest is empty or starts with "-".
 * ff is forbidden.
 */
const LATER_VERSION = /^(?!ff)[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-|$)/;
const ALL_ZERO = /^0+$/;

/**
 * The header's fields, or null when it is absent or not a valid traceparent
 * (the spec's answer to an invalid header: ignore it and go on as if none
 * had come, never refuse the request). A header sent twice reaches here
 * joined with ", " by Node and is refused too, as the spec asks.
 */
export function parseTraceParent(header: string | readonly string[] | undefined | null): TraceParent | null {
  if (typeof header !== 'string' || header.length < TRACEPARENT_LENGTH) return null;
  const match = header.length === TRACEPARENT_LENGTH ? VERSION_00.exec(header) : null;
  const fields = match ?? (header.startsWith('00') ? null : LATER_VERSION.exec(header));
  if (fields === null) return null;
  const [, traceId, parentId, flags] = fields as unknown as [string, string, string, string];
  if (ALL_ZERO.test(traceId) || ALL_ZERO.test(parentId)) return null;
  return { traceId, parentId, traceFlags: Number.parseInt(flags, 16) };
}

/** The version 00 header for a span: what commitd sends and stores, whatever version it read. */
export function formatTraceParent(traceId: string, spanId: string, traceFlags: number): string {
  return `00-${traceId}-${spanId}-${(traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** The header as commitd keeps it (version 00), or null when it is not a valid traceparent. */
export function normalizeTraceParent(header: string | readonly string[] | undefined | null): string | null {
  if (typeof header === 'string' && header.length === TRACEPARENT_LENGTH && header.startsWith('00-')) {
    // The common case: a valid version 00 header is kept as it came.
    return parseTraceParent(header) === null ? null : header;
  }
  const parsed = parseTraceParent(header);
  return parsed === null ? null : formatTraceParent(parsed.traceId, parsed.parentId, parsed.traceFlags);
}

/** The trace id of a header commitd stored (normalized), for log lines; null for none. */
export function traceIdOf(traceParent: string | null): string | null {
  return traceParent === null ? null : traceParent.slice(3, 35);
}
