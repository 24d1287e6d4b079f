// Participants for the benchmark, in a process of their own: each port is
// one participant that votes yes and acknowledges everything. In-memory by
// default, so the coordinator's own cost is what is measured; with
// --durable each message is appended to a file and fsynced first, like a
// real resource manager.
// Usage: node dist/bench/participant-server.js [--durable DIR] PORT...

import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { parseFlags, str } from '../src/cli/args.js';

const { values, positionals } = parseFlags(process.argv.slice(2), { durable: str() }, { allowPositionals: true });
const durableDir = values.durable ?? null;
const ports = positionals.map((p) => {
  const port = Number(p);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`not a TCP port: ${p}`);
  return port;
});

const YES = '{"vote":"yes"}';

for (const port of ports) {
  const fd = durableDir === null ? null : fs.openSync(path.join(durableDir, `participant-${port}.log`), 'a');
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const prepare = req.url?.endsWith('/prepare') ?? false;
      if (fd !== null) {
        fs.writeSync(fd, Buffer.concat([...chunks, Buffer.from('\n')]));
        fs.fsyncSync(fd);
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(prepare ? YES : '{}');
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1', () => process.send?.({ listening: port }));
}
process.on('SIGTERM', () => process.exit(0));
