// A TCP proxy a test puts between one process and a server, to cut that one
// path while everything else still works: `hold()` stops forwarding in both
// directions and keeps what arrives, as a network partition does to TCP (the
// peers see silence, not a reset); `release()` delivers everything held, in
// order, and forwards again, as TCP does once the path heals. A statement
// sent during the cut thus reaches the server late: exactly the stale write a
// fence must refuse.

import net from 'node:net';

export interface TcpProxy {
  readonly port: number;
  /** Stop forwarding; keep every byte and every new connection until release. */
  hold(): void;
  /** Deliver what was held, in order, and forward again. */
  release(): void;
  close(): Promise<void>;
}

/** Bytes held per direction per connection before the proxy gives up on it (a bound, far above a test's needs). */
const HELD_BYTES_MAX = 16 * 1024 * 1024;

interface Leg {
  readonly from: net.Socket;
  readonly to: net.Socket;
  readonly held: Buffer[];
  heldBytes: number;
  /** `from` closed while bytes were held: `to` closes once they are delivered. */
  fromClosed: boolean;
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  let holding = false;
  const legs = new Set<Leg>();
  const sockets = new Set<net.Socket>();

  const forward = (leg: Leg, chunk: Buffer) => {
    if (!holding) {
      leg.to.write(chunk);
      return;
    }
    leg.heldBytes += chunk.length;
    if (leg.heldBytes > HELD_BYTES_MAX) {
      leg.from.destroy();
      leg.to.destroy();
      return;
    }
    leg.held.push(chunk);
  };

  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, targetHost);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    }
    const up: Leg = { from: client, to: upstream, held: [], heldBytes: 0, fromClosed: false };
    const down: Leg = { from: upstream, to: client, held: [], heldBytes: 0, fromClosed: false };
    for (const leg of [up, down]) {
      legs.add(leg);
      leg.from.on('data', (chunk: Buffer) => forward(leg, chunk));
      // An end or a reset crosses only when nothing is held: a partition delivers nothing.
      leg.from.on('close', () => {
        leg.fromClosed = true;
        if (leg.held.length > 0) return;
        legs.delete(leg);
        leg.to.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    hold: () => {
      holding = true;
    },
    release: () => {
      holding = false;
      for (const leg of legs) {
        for (const chunk of leg.held.splice(0)) leg.to.write(chunk);
        leg.heldBytes = 0;
        if (leg.fromClosed) {
          legs.delete(leg);
          leg.to.end();
        }
      }
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
