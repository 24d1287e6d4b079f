// Which participant URLs commitd may call (issue 9, SSRF): pure checks, used
// where a URL is accepted (begin, enlist) and again on the address a name
// resolves to when the connection is made.
//
// Always refused: other schemes than http(s), user-info, a query or fragment,
// and addresses no participant can legitimately have: link-local (cloud
// metadata lives at 169.254.169.254), unspecified, multicast, broadcast and
// reserved, in every spelling. WHATWG URL parsing already turns decimal,
// octal, hex and short IPv4 forms into dotted quads; IPv4 inside IPv6
// (mapped, compatible, NAT64, 6to4) is unwrapped here. With an allowlist
// (COMMITD_PARTICIPANT_ORIGINS) only URLs under one of its entries pass.
//
// Exposed (issue 23): a commitd listening on a non-loopback address with no
// allowlist also refuses loopback, private and unique-local addresses (a
// client could otherwise make it POST prepare and abort messages to services
// that trust their neighbours); one listening on loopback only (a developer's
// machine) accepts them. A URL that reaches a commitd instance itself is
// refused in both modes (self-origins.ts says which).

import { BlockList, isIP } from 'node:net';

export type UrlRule =
  | 'scheme'
  | 'user-info'
  | 'query-or-fragment'
  | 'link-local'
  | 'unspecified'
  | 'multicast'
  | 'broadcast'
  | 'reserved'
  | 'metadata'
  | 'loopback'
  | 'private'
  | 'encoded-slash'
  | 'commitd'
  | 'not-allowed';

export type UrlVerdict =
  | { readonly ok: true; readonly url: URL }
  | { readonly ok: false; readonly rule: UrlRule; readonly detail: string };

/** One allowlist entry: an origin, and a path prefix (empty for the whole origin). */
export interface AllowedPrefix {
  readonly origin: string;
  readonly pathPrefix: string;
}

export class UrlPolicyError extends Error {
  override name = 'UrlPolicyError';
}

type Range = [UrlRule, string, number, 'ipv4' | 'ipv6'];

const RANGES: Range[] = [
  ['unspecified', '0.0.0.0', 8, 'ipv4'],
  ['link-local', '169.254.0.0', 16, 'ipv4'],
  ['multicast', '224.0.0.0', 4, 'ipv4'],
  ['broadcast', '255.255.255.255', 32, 'ipv4'],
  ['reserved', '240.0.0.0', 4, 'ipv4'],
  // Shared address space (RFC 6598): carrier NAT, and Alibaba Cloud's
  // metadata service at 100.100.100.200.
  ['reserved', '100.64.0.0', 10, 'ipv4'],
  // IETF protocol assignments (RFC 6890): DS-Lite, NAT64 discovery.
  ['reserved', '192.0.0.0', 24, 'ipv4'],
  // Azure's wire server (metadata, agent) and AWS's IPv6 metadata endpoint.
  ['metadata', '168.63.129.16', 32, 'ipv4'],
  ['metadata', 'fd00:ec2::254', 128, 'ipv6'],
  ['unspecified', '::', 128, 'ipv6'],
  ['link-local', 'fe80::', 10, 'ipv6'],
  ['multicast', 'ff00::', 8, 'ipv6'],
];

/** Refused only when commitd is exposed without an allowlist: addresses of this host and its network. */
const INTERNAL_RANGES: Range[] = [
  ['loopback', '127.0.0.0', 8, 'ipv4'],
  ['loopback', '::1', 128, 'ipv6'],
  ['private', '10.0.0.0', 8, 'ipv4'],
  ['private', '172.16.0.0', 12, 'ipv4'],
  ['private', '192.168.0.0', 16, 'ipv4'],
  // Unique-local (RFC 4193).
  ['private', 'fc00::', 7, 'ipv6'],
];

// One BlockList per rule, so a refusal names its rule. BlockList checks an
// IPv4-mapped IPv6 address (::ffff:a.b.c.d) against the IPv4 rules itself.
function blockLists(ranges: readonly Range[]): Array<[UrlRule, BlockList]> {
  const lists: Array<[UrlRule, BlockList]> = [];
  for (const [rule, network, prefix, family] of ranges) {
    let list = lists.find(([r]) => r === rule)?.[1];
    if (!list) {
      list = new BlockList();
      lists.push([rule, list]);
    }
    if (prefix === (family === 'ipv4' ? 32 : 128)) list.addAddress(network, family);
    else list.addSubnet(network, prefix, family);
  }
  return lists;
}

const LISTS = blockLists(RANGES);
const INTERNAL_LISTS = blockLists(INTERNAL_RANGES);

/**
 * Where commitd's policy stands for a URL: the allowlist, whether loopback
 * and private addresses are refused (listening on a non-loopback address
 * with no allowlist), and which origins are commitd instances.
 */
export interface UrlPolicyContext {
  readonly allowed: readonly AllowedPrefix[];
  readonly internalRefused: boolean;
  /** Whether the URL reaches a commitd instance (this one or a peer). */
  readonly reachesCommitd: (url: URL) => boolean;
}

/** The policy of a commitd on loopback with no allowlist and no instance to avoid (tests, tools). */
export const OPEN_POLICY: UrlPolicyContext = { allowed: [], internalRefused: false, reachesCommitd: () => false };

/** Exposed = listening on an address other than loopback (0.0.0.0 and :: included); an allowlist takes over. */
export function internalRefused(exposed: boolean, allowed: readonly AllowedPrefix[]): boolean {
  return exposed && allowed.length === 0;
}

/**
 * Verdicts of the addresses seen lately. BlockList.check builds a
 * SocketAddress per call, five lists per address: about 40 µs of CPU per
 * two-participant begin in the HTTP benchmark, for the same few participant
 * addresses again and again. Cleared when full: a caller sending ever new
 * addresses only brings back the uncached cost.
 */
const ADDRESS_VERDICTS_MAX = 4096;
const addressVerdicts = new Map<string, UrlRule | null>();

const internalVerdicts = new Map<string, UrlRule | null>();

/**
 * The rule an IP address breaks, or null. `address` is a bare IPv4 or IPv6
 * address (no brackets). With `internal`, loopback and private addresses
 * break a rule too (commitd exposed with no allowlist).
 */
export function addressRule(address: string, internal = false): UrlRule | null {
  const family = isIP(address);
  if (family === 0) return null;
  const fixed = cachedRule(addressVerdicts, address, () => ruleOf(LISTS, address, family, false));
  if (fixed !== null || !internal) return fixed;
  return cachedRule(internalVerdicts, address, () => ruleOf(INTERNAL_LISTS, address, family, true));
}

function cachedRule(cache: Map<string, UrlRule | null>, address: string, rule: () => UrlRule | null): UrlRule | null {
  const known = cache.get(address);
  if (known !== undefined) return known;
  const found = rule();
  if (cache.size >= ADDRESS_VERDICTS_MAX) cache.clear();
  cache.set(address, found);
  return found;
}

function ruleOf(
  lists: Array<[UrlRule, BlockList]>,
  address: string,
  family: number,
  internal: boolean,
): UrlRule | null {
  const type = family === 4 ? 'ipv4' : 'ipv6';
  for (const [rule, list] of lists) if (list.check(address, type)) return rule;
  if (family === 6) {
    const embedded = embeddedIpv4(address);
    if (embedded !== null) return addressRule(embedded, internal);
  }
  return null;
}

/** The names that are loopback whatever a resolver says (RFC 6761): `localhost` and anything under it. */
export function isLocalhostName(hostname: string): boolean {
  const h = hostname.toLowerCase().replace(/\.$/, '');
  return h === 'localhost' || h.endsWith('.localhost');
}

/**
 * The IPv4 address inside an IPv6 one that carries it: in its last 32 bits
 * for IPv4-compatible (::a.b.c.d, deprecated but still parsed), NAT64
 * (64:ff9b::/96, and the local-use 64:ff9b:1::/48 of RFC 8215) and mapped
 * (::ffff:0:0/96, which BlockList also knows); in bits 16-47 for 6to4
 * (2002::/16), whose relay would carry the packet to that IPv4 address.
 */
export function embeddedIpv4(address: string): string | null {
  const groups = expandIpv6(address);
  if (groups === null) return null;
  const high = groups.slice(0, 6);
  const zeros = (n: number) => high.slice(0, n).every((g) => g === 0);
  const compatible = zeros(6) && (groups[6] !== 0 || (groups[7] ?? 0) > 1); // not :: or ::1
  const mapped = zeros(5) && high[5] === 0xffff;
  const nat64 = high[0] === 0x64 && high[1] === 0xff9b && high.slice(2).every((g) => g === 0);
  const localNat64 = high[0] === 0x64 && high[1] === 0xff9b && high[2] === 1;
  if (groups[0] === 0x2002) return dottedQuad(groups[1] ?? 0, groups[2] ?? 0);
  if (!compatible && !mapped && !nat64 && !localNat64) return null;
  return dottedQuad(groups[6] ?? 0, groups[7] ?? 0);
}

function dottedQuad(a: number, b: number): string {
  return `${a >> 8}.${a & 0xff}.${b >> 8}.${b & 0xff}`;
}

/** Eight 16-bit groups of an IPv6 address (with or without an IPv4 tail), or null. */
function expandIpv6(address: string): number[] | null {
  let text = address.toLowerCase();
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4?.[1]) {
    const parts = v4[1].split('.').map(Number);
    text = `${text.slice(0, -v4[1].length)}${(((parts[0] ?? 0) << 8) | (parts[1] ?? 0)).toString(16)}:${(((parts[2] ?? 0) << 8) | (parts[3] ?? 0)).toString(16)}`;
  }
  const [head, tail, ...rest] = text.split('::');
  if (rest.length > 0) return null;
  const h = head ? head.split(':') : [];
  const t = tail === undefined ? [] : tail ? tail.split(':') : [];
  const missing = 8 - h.length - t.length;
  if (tail === undefined ? missing !== 0 : missing < 0) return null;
  const groups = [...h, ...Array(tail === undefined ? 0 : missing).fill('0'), ...t].map((g) => Number.parseInt(g, 16));
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

/**
 * COMMITD_PARTICIPANT_ORIGINS entries: an origin (`https://pay.internal:8443`)
 * or a URL prefix (`https://pay.internal:8443/2pc/`). Throws UrlPolicyError.
 */
export function parseAllowedPrefixes(entries: readonly string[]): AllowedPrefix[] {
  return entries.map((entry) => {
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      throw new UrlPolicyError(`'${entry.slice(0, 200)}' is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new UrlPolicyError(`'${entry.slice(0, 200)}' is not an http(s) origin`);
    }
    if (url.username || url.password || url.search || url.hash) {
      throw new UrlPolicyError(`'${url.origin}…' must not carry user-info, a query or a fragment`);
    }
    return { origin: url.origin, pathPrefix: url.pathname === '/' ? '' : url.pathname.replace(/\/+$/, '') };
  });
}

/**
 * Whether a participant URL may be called: the rule it breaks, named, or the
 * parsed URL. `policy` is an allowlist alone (the policy of a commitd on
 * loopback) or the whole context.
 */
export function checkParticipantUrl(text: string, policy: readonly AllowedPrefix[] | UrlPolicyContext): UrlVerdict {
  const context: UrlPolicyContext = Array.isArray(policy)
    ? { ...OPEN_POLICY, allowed: policy as readonly AllowedPrefix[] }
    : (policy as UrlPolicyContext);
  const allowed = context.allowed;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return refuse('scheme', 'is not a valid URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return refuse('scheme', 'must be http(s)');
  if (url.username || url.password) return refuse('user-info', 'must not carry user-info (credentials)');
  if (url.search || url.hash) return refuse('query-or-fragment', 'must not have a query or fragment');
  // An encoded slash or backslash is one path segment to the URL parser and
  // the prefix check, and a separator to many servers and proxies: it would
  // walk out of an allowlisted prefix (/2pc/..%2f..%2fadmin).
  if (/%(2f|5c)/i.test(url.pathname)) return refuse('encoded-slash', 'must not carry an encoded slash (%2f, %5c)');
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const rule = addressRule(host);
  if (rule !== null) return refuse(rule, `points at a ${rule} address (${host})`);
  if (context.reachesCommitd(url)) {
    return refuse('commitd', `reaches a commitd instance (${url.origin}), not a participant`);
  }
  if (allowed.length > 0 && !allowed.some((a) => underPrefix(url, a))) {
    return refuse('not-allowed', `is not under an allowed participant origin (COMMITD_PARTICIPANT_ORIGINS)`);
  }
  if (context.internalRefused) {
    const internal = isLocalhostName(host) ? 'loopback' : addressRule(host, true);
    if (internal !== null) {
      return refuse(
        internal,
        `points at a ${internal} address (${host}), refused while commitd listens on a non-loopback address: list the participant's origin in COMMITD_PARTICIPANT_ORIGINS to allow it`,
      );
    }
  }
  return { ok: true, url };
}

function underPrefix(url: URL, a: AllowedPrefix): boolean {
  if (url.origin !== a.origin) return false;
  if (a.pathPrefix === '') return true;
  // /2pc allows /2pc and /2pc/..., not /2pcx.
  return url.pathname === a.pathPrefix || url.pathname.startsWith(`${a.pathPrefix}/`);
}

function refuse(rule: UrlRule, detail: string): UrlVerdict {
  return { ok: false, rule, detail };
}
