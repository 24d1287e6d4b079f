// What a message participant's message may be (issue 21): checked when it
// enlists, so a transaction never commits with a message the broker would
// refuse or misread. Pure: the API turns a problem into a 400.

/** Longer subjects are legal for NATS but no real one needs them. */
export const SUBJECT_LENGTH_MAX = 255;
export const HEADERS_COUNT_MAX = 32;
export const HEADER_NAME_LENGTH_MAX = 64;
export const HEADER_VALUE_LENGTH_MAX = 1024;

/** An RFC 9110 token: what a header name may be on the wire NATS uses (MIME headers). */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Visible ASCII and spaces: no CR or LF (they would end the header), no other control character. */
const HEADER_VALUE = /^[\x20-\x7e]*$/;
/** Headers commitd sets, and the broker's own (Nats-Expected-Stream and the like change what it does). */
const RESERVED_HEADER_PREFIXES = ['nats-', 'commitd-'];

/** Why a subject cannot carry a message participant's message, or null when it can. */
export function subjectProblem(subject: string): string | null {
  if (subject.length === 0 || subject.length > SUBJECT_LENGTH_MAX) {
    return `subject must be 1 to ${SUBJECT_LENGTH_MAX} characters`;
  }
  if (!/^[\x21-\x7e]+$/.test(subject)) return 'subject may hold visible ASCII characters only (no spaces)';
  if (subject.includes('*') || subject.includes('>')) {
    return `subject '${subject}' has a wildcard ('*' or '>'): a message is published to one subject`;
  }
  if (subject.startsWith('$')) return `subject '${subject}' is a system subject ('$…'): not for messages`;
  if (subject.split('.').some((token) => token === '')) {
    return `subject '${subject}' has an empty token (a leading, trailing or doubled '.')`;
  }
  return null;
}

/** Why these headers cannot go with a message, or null when they can. */
export function headersProblem(headers: Readonly<Record<string, unknown>>): string | null {
  const entries = Object.entries(headers);
  if (entries.length > HEADERS_COUNT_MAX) return `at most ${HEADERS_COUNT_MAX} headers`;
  for (const [name, value] of entries) {
    if (name.length === 0 || name.length > HEADER_NAME_LENGTH_MAX || !HEADER_NAME.test(name)) {
      return `header name '${name.slice(0, HEADER_NAME_LENGTH_MAX)}' must be 1 to ${HEADER_NAME_LENGTH_MAX} token characters (letters, digits, '-', no ':' or spaces)`;
    }
    const lower = name.toLowerCase();
    if (RESERVED_HEADER_PREFIXES.some((prefix) => lower.startsWith(prefix))) {
      return `header '${name}' is reserved (names starting with Nats- or Commitd- are the broker's and commitd's)`;
    }
    if (typeof value !== 'string') return `header '${name}' must be a string`;
    if (value.length > HEADER_VALUE_LENGTH_MAX || !HEADER_VALUE.test(value)) {
      return `header '${name}' value must be at most ${HEADER_VALUE_LENGTH_MAX} visible ASCII characters (no CR or LF)`;
    }
  }
  return null;
}

/**
 * The Nats-Msg-Id of a message participant's message: one per deployment,
 * transaction and participant, so a republish after a crash or a takeover is
 * dropped by the broker's duplicate window, and two deployments sharing a
 * broker never drop each other's.
 */
export function messageId(deploymentId: string, txId: string, participant: string): string {
  return `${deploymentId}:${txId}:${participant}`;
}
