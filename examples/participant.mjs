// A tiny participant for trying commitd by hand: it votes yes to every
// prepare (or no, when the payload says {"vote": "no"}), and logs what it hears.
// Usage: node examples/participant.mjs PORT
import http from 'node:http';

const port = Number(process.argv[2] ?? 9001);
http
  .createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const message = JSON.parse(body || '{}');
      const action = req.url.split('/').pop();
      console.log(`${port}: ${action} ${message.transactionId}`);
      res.setHeader('content-type', 'application/json');
      if (action === 'prepare') res.end(JSON.stringify({ vote: message.payload?.vote ?? 'yes' }));
      else res.end('{}');
    });
  })
  .listen(port, '127.0.0.1', () => console.log(`participant listening on http://127.0.0.1:${port}`));
