// Which participant URLs reach a commitd instance (issue 23): this one, at its
// listening address or its advertised URL, or a peer at its advertised URL.
// A participant URL that does is refused whatever else the policy allows:
// commitd's prepare and abort messages, sent to a commitd that takes them
// for client calls, could act on that instance's transactions.

import os from 'node:os';
import { isLoopbackName } from '../security/access.js';

export class CommitdOrigins {
  /** Known once listening (the configured port may be 0: ephemeral). */
  private listenPort: number;
  private advertised: string | null;
  private readonly listenHost: string;
  /** Addresses this host answers on when commitd listens on a wildcard address. */
  private readonly localAddresses: ReadonlySet<string>;

  constructor(
    listenHost: string,
    listenPort: number,
    advertiseUrl: string | null,
    /** The peers' advertised URLs as last seen (several instances); none with one instance. */
    private readonly peerUrls: () => readonly string[] = () => [],
  ) {
    this.listenHost = bare(listenHost);
    this.listenPort = listenPort;
    this.advertised = advertiseUrl === null ? null : new URL(advertiseUrl).origin;
    this.localAddresses = this.listenHost === '0.0.0.0' || this.listenHost === '::' ? interfaceAddresses() : new Set();
  }

  /** Once listening: the port really bound, and the advertised URL if it was derived from it. */
  listening(port: number, advertiseUrl: string | null): void {
    this.listenPort = port;
    if (advertiseUrl !== null) this.advertised = new URL(advertiseUrl).origin;
  }

  reaches(url: URL): boolean {
    if (url.origin === this.advertised) return true;
    if (this.peerUrls().some((peer) => sameOrigin(peer, url.origin))) return true;
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80));
    if (port !== this.listenPort || this.listenPort === 0) return false;
    const host = bare(url.hostname);
    return host === this.listenHost || isLoopbackName(host) || this.localAddresses.has(host);
  }
}

function bare(host: string): string {
  return host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
}

function sameOrigin(url: string, origin: string): boolean {
  try {
    return new URL(url).origin === origin;
  } catch {
    return false;
  }
}

function interfaceAddresses(): Set<string> {
  const found = new Set<string>();
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) found.add(a.address.toLowerCase());
  }
  return found;
}
