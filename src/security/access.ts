// Who may call what: one decision per request, made on the route the router
// chose (fastify's route pattern such as /v1/transactions/:id/abort), never on
// the raw URL, so percent-encodings, absolute-form request lines, double
// slashes or letter case cannot steer a request past the check onto a route.

import { BlockList, isIP } from 'node:net';
import type { Role } from './tokens.js';

/** Nobody needs a token (liveness, readiness, and metrics and docs unless protected). */
export type Access = { readonly kind: 'open' } | { readonly kind: 'roles'; readonly roles: readonly Role[] };

const OPEN: Access = { kind: 'open' };
const ADMIN: Access = { kind: 'roles', roles: ['admin'] };
const roles = (...r: Role[]): Access => ({ kind: 'roles', roles: ['admin', ...r] });

/** METHOD + route pattern -> who may call it. A /v1 route missing here is admin-only. */
const TABLE: Record<string, Access> = {
  'POST /v1/transactions': roles('client'),
  'POST /v1/transactions/:id/participants': roles('client', 'participant'),
  'POST /v1/transactions/:id/prepare': roles('client'),
  'POST /v1/transactions/:id/commit': roles('client'),
  'POST /v1/transactions/:id/abort': roles('client'),
  'GET /v1/transactions/:id': roles('client', 'participant'),
  'GET /v1/transactions/:id/outcome': roles('participant'),
  'GET /v1/transactions': ADMIN,
  // What operators see and do: admin only, said here rather than left to the default.
  'GET /v1/transactions/:id/history': ADMIN,
  'POST /v1/transactions/:id/retry': ADMIN,
  'POST /v1/transactions/:id/resolve': ADMIN,
  'GET /v1/stats': ADMIN,
  // The operator console's page, script and style: open on purpose. They
  // carry no data (the same files for everyone); every call the page makes
  // to /v1 sends the admin token the operator typed, checked as any other.
  'GET /console': OPEN,
  'GET /console/': OPEN,
  'GET /console/:file': OPEN,
};

const ALWAYS_OPEN = new Set(['/healthz', '/readyz']);

/**
 * The access rule of a routed request. `route` is the pattern of the route
 * that will run, or undefined when none matched (the not-found handler runs,
 * which does nothing). Anything routed and not listed is admin-only: a route
 * added later is closed until someone decides otherwise.
 */
export function accessFor(method: string, route: string | undefined, protectOperations: boolean): Access {
  if (route === undefined) return OPEN;
  if (ALWAYS_OPEN.has(route)) return OPEN;
  const listed = TABLE[`${method === 'HEAD' ? 'GET' : method} ${route}`];
  if (listed) return listed;
  if (route === '/metrics' || route === '/docs' || route.startsWith('/docs/')) return protectOperations ? ADMIN : OPEN;
  return ADMIN;
}

/** Routes that change state: refused from a browser page of another origin. */
export function isMutating(method: string): boolean {
  return method !== 'GET' && method !== 'HEAD' && method !== 'OPTIONS';
}

/** The name an action is logged under, or null for a route whose calls are not logged one by one. */
export function actionName(method: string, route: string | undefined): string | null {
  if (route === undefined || !route.startsWith('/v1/')) return null;
  if (method === 'POST') {
    if (route === '/v1/transactions') return 'begin';
    if (route.endsWith('/participants')) return 'enlist';
    return route.slice(route.lastIndexOf('/') + 1);
  }
  if (route === '/v1/transactions') return 'list';
  return null;
}

/**
 * Is `origin` one commitd serves a browser page from (its own) or one the
 * operator allowed? Its own is the scheme and Host of the request itself.
 */
export function originAllowed(origin: string, ownOrigin: string, allowed: readonly string[]): boolean {
  const normal = normalOrigin(origin);
  if (normal === null) return false;
  return normal === normalOrigin(ownOrigin) || allowed.some((a) => normalOrigin(a) === normal);
}

export function normalOrigin(text: string): string | null {
  try {
    const o = new URL(text).origin;
    return o === 'null' ? null : o;
  } catch {
    return null;
  }
}

/** Host names a loopback-only commitd answers to; any other Host is a page that rebound a name to 127.0.0.1. */
export function isLoopbackHost(hostHeader: string | undefined): boolean {
  if (hostHeader === undefined) return false;
  // Asked on every request, answered by parsing a URL: a service sees a
  // handful of Host values, so the verdicts are kept (a pure function of the
  // header; the map is bounded).
  const known = loopbackHosts.get(hostHeader);
  if (known !== undefined) return known;
  let verdict: boolean;
  try {
    verdict = isLoopbackName(new URL(`http://${hostHeader}`).hostname);
  } catch {
    verdict = false;
  }
  if (loopbackHosts.size >= LOOPBACK_HOSTS_KEPT_MAX) loopbackHosts.clear();
  loopbackHosts.set(hostHeader, verdict);
  return verdict;
}

const LOOPBACK_HOSTS_KEPT_MAX = 256;
const loopbackHosts = new Map<string, boolean>();

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** localhost, 127.0.0.0/8, ::1, and 127.0.0.0/8 spelled as IPv4-mapped IPv6. */
export function isLoopbackName(hostname: string): boolean {
  const h = hostname
    .toLowerCase()
    .replace(/\.$/, '')
    .replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  const family = isIP(h);
  // BlockList matches an IPv4-mapped IPv6 address against its IPv4 rules.
  return family !== 0 && LOOPBACK.check(h, family === 4 ? 'ipv4' : 'ipv6');
}
