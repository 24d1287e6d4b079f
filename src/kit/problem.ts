// RFC 9457 problem documents for the kit's refusals (the same `urn:commitd:problem:` types commitd uses).

export interface KitResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

export function json(status: number, body: unknown): KitResponse {
  return { status, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

export function problem(slug: string, status: number, title: string, detail: string): KitResponse {
  return {
    status,
    headers: { 'content-type': 'application/problem+json' },
    body: JSON.stringify({ type: `urn:commitd:problem:${slug}`, title, status, detail }),
  };
}
