// The kit as a plain node:http request handler. Mount it under the path
// commitd is given as the participant URL (`http://host:port/tx` → requests
// to /tx/prepare, /tx/commit, /tx/abort); any path ending in one of those
// three is handled.

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { KitHandler, KitRequest } from './participant.js';
import { problem } from './problem.js';

export interface NodeHandlerOptions {
  /** Largest request body read. Default 1 MiB (commitd's payload limit is the real bound). */
  readonly maxBodyBytes?: number;
}

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void;

export function nodeHandler(participant: KitHandler, options: NodeHandlerOptions = {}): NodeHandler {
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  return (req, res) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBodyBytes) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('error', () => res.destroy());
    req.on('end', () => {
      if (tooLarge) {
        send(res, problem('too-large', 413, 'Too large', `the body is larger than ${maxBodyBytes} bytes`));
        return;
      }
      const request: KitRequest = {
        method: req.method ?? 'GET',
        path: (req.url ?? '/').split('?')[0] as string,
        headers: req.headers,
        body: Buffer.concat(chunks),
      };
      void participant.handle(request).then((answer) => send(res, answer));
    });
  };
}

function send(res: ServerResponse, answer: { status: number; headers: Record<string, string>; body: string }): void {
  if (res.destroyed) return;
  res.writeHead(answer.status, answer.headers);
  res.end(answer.body);
}
