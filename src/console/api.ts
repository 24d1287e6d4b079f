// Calls to commitd's admin API with the token the operator typed. The token
// lives in this tab's session storage only: gone when the tab closes or the
// operator logs out, never in local storage or a cookie.

const TOKEN_KEY = 'commitd.adminToken';
/** A call that takes longer is reported as failed; the page never waits forever. */
const CALL_TIMEOUT_MS = 15_000;

export function savedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function saveToken(token: string): void {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken(): void {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** A failed call: the problem document's `detail` when commitd sent one, else what went wrong. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly problemType: string | null,
  ) {
    super(detail);
  }
}

export interface Answer<T> {
  readonly status: number;
  readonly body: T;
}

export async function call<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Answer<T>> {
  const token = savedToken();
  const headers: Record<string, string> = { accept: 'application/json, application/problem+json' };
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? null : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'omit',
      signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
    });
  } catch (error) {
    throw new ApiError(0, `commitd did not answer: ${(error as Error).message}`, null);
  }
  const text = await response.text();
  let parsed: unknown = null;
  try {
    parsed = text === '' ? null : JSON.parse(text);
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const problem = (parsed ?? {}) as { detail?: unknown; type?: unknown };
    const detail =
      typeof problem.detail === 'string' ? problem.detail : `${response.status} ${response.statusText}`.trim();
    throw new ApiError(response.status, detail, typeof problem.type === 'string' ? problem.type : null);
  }
  return { status: response.status, body: parsed as T };
}

/** A path segment from data (a transaction id from the address bar), encoded. */
export function segment(value: string): string {
  return encodeURIComponent(value);
}
