// The request line's target. HTTP/1.1 allows the absolute form
// (`GET http://host:port/path HTTP/1.1`, meant for proxies); the router
// routes it by its path, so a call could name one host on its request line
// and another in Host. commitd is no proxy: an absolute-form target must name
// the host the request was sent to (its Host header), else it is refused
// before anything else runs. And a call passed to another instance is rebuilt
// from what was routed (the route's pattern, its parameters, the query),
// never from the raw target, so nothing a caller writes chooses where it goes.

/** `scheme://` at the start of a request target: the absolute form. */
const ABSOLUTE_FORM = /^[a-z][a-z0-9+.-]*:\/\//i;

/**
 * Why an absolute-form target is refused, or null when the target is in
 * origin form (`/path`) or names the Host the request carries.
 */
export function absoluteFormRefusal(target: string, hostHeader: string | undefined): string | null {
  if (!ABSOLUTE_FORM.test(target)) return null;
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return 'the request line names a target that is not a URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    return 'the request line names a scheme other than http(s)';
  if (url.username !== '' || url.password !== '') return 'the request line names a user';
  if (hostHeader === undefined || url.host !== hostOf(hostHeader)) {
    return 'the request line names another host than this one: commitd is not a proxy';
  }
  return null;
}

/** The Host header as URL.host spells it (lower case, default port dropped), or null when it is not a host. */
function hostOf(hostHeader: string): string | null {
  try {
    const url = new URL(`http://${hostHeader}`);
    return url.pathname === '/' && url.username === '' ? url.host : null;
  } catch {
    return null;
  }
}

/**
 * The path and query to send to another instance: the route's pattern with
 * each `:name` replaced by its parameter, percent-encoded, and the query as
 * parsed (null when the route is not known). Always starts with one `/`, so
 * resolving it against the owner's URL keeps the owner's host.
 */
export function routedTarget(route: string | undefined, params: unknown, query: unknown): string | null {
  if (route === undefined || !route.startsWith('/') || route.startsWith('//')) return null;
  const values = (params ?? {}) as Record<string, unknown>;
  let missing = false;
  const path = route.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, (_all, name: string) => {
    const value = values[name];
    if (typeof value !== 'string') {
      missing = true;
      return '';
    }
    return encodeURIComponent(value);
  });
  if (missing) return null;
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (typeof one === 'string') search.append(name, one);
    }
  }
  const text = search.toString();
  return text === '' ? path : `${path}?${text}`;
}
