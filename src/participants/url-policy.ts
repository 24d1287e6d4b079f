// Which participant URLs commitd may call (issue 9, SSRF): pure checks, used
// where a URL is accepted (begin, enlist) and again on the address a name
// resolves to when the connection is made.
//
// Always refused: other schemes than http(s), user-info, a query or fragment,
// and addresses no participant can legitimately have: link-local (cloud
// metadata lives at 169.254.169.254), unspecified, multicast, broadcast and
// reserved, in every spelling. WHATWG URL parsing already turns decimal,
// octal, hex and short IPv4 forms into dotted quads; IPv4 inside IPv6
// (mapped, compatible, NAT64) is unwrapped here. With an allowlist
// (COMMITD_PARTICIPANT_ORIGINS) only URLs under one of its entries pass.

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

const RANGES: Array<[UrlRule, string, number, 'ipv4' | 'ipv6']> = [
  ['unspecified', '0.0.0.0', 8, 'ipv4'],
  ['link-local', '169.254.0.0', 16, 'ipv4'],
  ['multicast', '224.0.0.0', 4, 'ipv4'],
  ['broadcast', '255.255.255.255', 32, 'ipv4'],
  ['reserved', '240.0.0.0', 4, 'ipv4'],
  ['unspecified', '::', 128, 'ipv6'],
  ['link-local', 'fe80::', 10, 'ipv6'],
  ['multicast', 'ff00::', 8, 'ipv6'],
];

// One BlockList per rule, so a refusal names its rule. BlockList checks an
// IPv4-mapped IPv6 address (::ffff:a.b.c.d) against the IPv4 rules itself.
const LISTS: Array<[UrlRule, BlockList]> = [];
for (const [rule, network, prefix, family] of RANGES) {
  let list = LISTS.find(([r]) => r === rule)?.[1];
  if (!list) {
    list = new BlockList();
    LISTS.push([rule, list]);
  }
  list.addSubnet(network, prefix, family);
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

/** The rule an IP address breaks, or null. `address` is a bare IPv4 or IPv6 address (no brackets). */
export function addressRule(address: string): UrlRule | null {
  const family = isIP(address);
  if (family === 0) return null;
  const known = addressVerdicts.get(address);
  if (known !== undefined) return known;
  const rule = ruleOf(address, family);
  if (addressVerdicts.size >= ADDRESS_VERDICTS_MAX) addressVerdicts.clear();
  addressVerdicts.set(address, rule);
  return rule;
}

function ruleOf(address: string, family: number): UrlRule | null {
  const type = family === 4 ? 'ipv4' : 'ipv6';
  for (const [rule, list] of LISTS) if (list.check(address, type)) return rule;
  if (family === 6) {
    const embedded = embeddedIpv4(address);
    if (embedded !== null) return addressRule(embedded);
  }
  return null;
}

/**
 * The IPv4 address inside an IPv6 one that carries it in its last 32 bits:
 * IPv4-compatible (::a.b.c.d, deprecated but still parsed), NAT64
 * (64:ff9b::/96) and mapped (::ffff:0:0/96, which BlockList also knows).
 */
export function embeddedIpv4(address: string): string | null {
  const groups = expandIpv6(address);
  if (groups === null) return null;
  const high = groups.slice(0, 6);
  const zeros = (n: number) => high.slice(0, n).every((g) => g === 0);
  const compatible = zeros(6) && (groups[6] !== 0 || (groups[7] ?? 0) > 1); // not :: or ::1
  const mapped = zeros(5) && high[5] === 0xffff;
  const nat64 = high[0] === 0x64 && high[1] === 0xff9b && high.slice(2).every((g) => g === 0);
  if (!compatible && !mapped && !nat64) return null;
  const a = groups[6] ?? 0;
  const b = groups[7] ?? 0;
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

/** Whether a participant URL may be called: the rule it breaks, named, or the parsed URL. */
export function checkParticipantUrl(text: string, allowed: readonly AllowedPrefix[]): UrlVerdict {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return refuse('scheme', 'is not a valid URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return refuse('scheme', 'must be http(s)');
  if (url.username || url.password) return refuse('user-info', 'must not carry user-info (credentials)');
  if (url.search || url.hash) return refuse('query-or-fragment', 'must not have a query or fragment');
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const rule = addressRule(host);
  if (rule !== null) return refuse(rule, `points at a ${rule} address (${host})`);
  if (allowed.length > 0 && !allowed.some((a) => underPrefix(url, a))) {
    return refuse('not-allowed', `is not under an allowed participant origin (COMMITD_PARTICIPANT_ORIGINS)`);
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
