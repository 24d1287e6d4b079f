// The kit as a fastify plugin: POST {prefix}/prepare, /commit, /abort. The
// routes live in their own encapsulated context, where JSON bodies are read
// raw (the signature covers the exact bytes), so the service's own parsers
// and hooks elsewhere are untouched. fastify is used only through the
// instance the service registers this on; this module loads nothing itself.

import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import type { KitHandler } from './participant.js';

export interface FastifyParticipantOptions {
  readonly participant: KitHandler;
  /** Largest request body read. Default 1 MiB. */
  readonly maxBodyBytes?: number;
}

export const participantPlugin: FastifyPluginAsync<FastifyParticipantOptions> = async (
  app: FastifyInstance,
  options: FastifyParticipantOptions,
) => {
  const bodyLimit = options.maxBodyBytes ?? 1024 * 1024;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit }, (_request, body, done) => done(null, body));
  for (const action of ['prepare', 'commit', 'abort']) {
    app.post(`/${action}`, { bodyLimit }, async (request, reply) => {
      const answer = await options.participant.handle({
        method: request.method,
        path: request.url.split('?')[0] as string,
        headers: request.headers,
        body: Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0),
      });
      return reply.code(answer.status).headers(answer.headers).send(answer.body);
    });
  }
};

export default participantPlugin;
