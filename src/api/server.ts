// The HTTP server: fastify with strict schemas, problem+json errors, access
// control (access-control.ts), readiness gating, operations endpoints and the
// OpenAPI document.

import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyServerOptions, LogController } from 'fastify';
import type { ClusterMember } from '../cluster/cluster-member.js';
import type { Config } from '../config.js';
import type { Coordinator } from '../coordinator/coordinator.js';
import { ElsewhereError } from '../coordinator/errors.js';
import type { Metrics } from '../metrics.js';
import type { UrlPolicyContext } from '../participants/url-policy.js';
import { answerWaitMsMax } from '../protocol/answers.js';
import { installAccessControl } from './access-control.js';
import { consoleRoutes, DOCS_CSP, pageHeaders, readConsoleFiles } from './console-routes.js';
import { Forwarding } from './forwarding.js';
import { errorHandler, ProblemError, problem, sendProblem } from './problems.js';
import { installRateLimit } from './rate-limit.js';
import type { Readiness } from './readiness.js';
import { installRefusalLimit } from './refusal-limit.js';
import { absoluteFormRefusal } from './request-target.js';
import { problemSchema, transactionSchema } from './schemas.js';
import { transactionRoutes } from './transactions-routes.js';

export interface ApiOptions {
  readonly coordinator: Coordinator;
  /** The deployment's identity: in the names the view gives database participants. */
  readonly deploymentId: string;
  readonly config: Config;
  readonly metrics: Metrics;
  readonly readiness: Readiness;
  readonly logger: FastifyServerOptions['logger'];
  /** With several instances on one store: this one's part (healthz names it, /v1/cluster shows the cluster, calls are forwarded). */
  readonly member?: ClusterMember | null;
  /** The private CA the other instances' certificates come from (PEM, read by the caller), or null. */
  readonly peerCa?: string | null;
  /** Serve HTTPS with this certificate chain and key (PEM), read by the caller. */
  readonly tls?: { readonly cert: string; readonly key: string } | null;
  /** Which participant URLs begin and enlist accept (assemble.ts); without it, the allowlist of the config alone. */
  readonly urlPolicy?: UrlPolicyContext;
}

/** Beyond the owner's answer bound, for the hop itself. */
const FORWARD_GRACE_MS = 5_000;
/** Connections kept to each other instance for forwarded calls. */
const FORWARD_CONNECTIONS_PER_PEER = 64;

/** Deeper than any real payload needs; far below what recursion over it could not handle. */
export const MAX_JSON_DEPTH = 64;

export async function buildApi(o: ApiOptions): Promise<FastifyInstance> {
  const server = o.config.server;
  // Node checks the headers and request timeouts on this interval (30 s by
  // default): a slow client would otherwise be cut off only that late.
  const httpOptions = {
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(server.headersTimeoutMs / 2))),
    headersTimeout: server.headersTimeoutMs,
    requestTimeout: server.requestTimeoutMs,
  };
  const app = Fastify({
    ...(o.tls ? { https: { ...httpOptions, cert: o.tls.cert, key: o.tls.key } } : { http: httpOptions }),
    requestTimeout: server.requestTimeoutMs,
    connectionTimeout: server.idleTimeoutMs,
    keepAliveTimeout: server.idleTimeoutMs,
    logger: o.logger,
    // One log line per request would cost more than the request at full
    // load; failures are logged where they happen.
    logController: new LogController({ disableRequestLogging: true }),
    // The router's own refusals (a malformed percent-encoding, an over-long
    // path parameter) are problem documents too.
    frameworkErrors: (error, _request, reply) => {
      const status = (error as { statusCode?: number }).statusCode ?? 400;
      return sendProblem(
        reply,
        problem('invalid-request', status >= 400 && status < 500 ? status : 400, error.message),
      );
    },
    bodyLimit: o.config.server.bodyLimitBytes,
    // Keep-alive connections from participants and clients outlive a request;
    // on shutdown they are closed once idle.
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    ajv: {
      // Unknown fields are refused, not silently dropped, and "5" is not 5.
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false },
    },
  });

  // JSON only: text/plain is fastify's other default parser and would turn a
  // body into a string that only fails later, as a 400 instead of a 415.
  // An empty body on the action endpoints (POST .../commit with
  // content-type: application/json and no body) means "no body", not bad JSON.
  const jsonParser = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser(['application/json', 'text/plain']);
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') return done(null, undefined);
    const depth = jsonDepth(body as string);
    if (depth > MAX_JSON_DEPTH) {
      return done(
        new ProblemError(problem('invalid-request', 400, `JSON nested deeper than ${MAX_JSON_DEPTH} levels`)),
      );
    }
    jsonParser(request, body as string, done);
  });

  app.server.headersTimeout = server.headersTimeoutMs;
  app.server.maxConnections = server.maxConnections;

  const member = o.member ?? null;
  const forwarding =
    member === null
      ? null
      : new Forwarding({
          instanceId: member.instanceId,
          // The owner waits up to the answer bound for a decision, then answers.
          answerTimeoutMs:
            answerWaitMsMax(o.config.participants.prepareTimeoutMs, o.config.participants.phaseTwoTimeoutMs) +
            FORWARD_GRACE_MS,
          connectionsPerPeer: FORWARD_CONNECTIONS_PER_PEER,
          answerBytesMax: o.config.transactions.listPageMaxBytes,
          metrics: o.metrics,
          peerCa: o.peerCa ?? null,
        });
  if (forwarding) app.addHook('onClose', () => forwarding.close());
  app.setErrorHandler((error: FastifyError, request, reply) =>
    forwarding !== null && error instanceof ElsewhereError
      ? forwarding.forward(error, request, reply)
      : errorHandler(error, request, reply),
  );
  app.setNotFoundHandler((request, reply) =>
    sendProblem(reply, problem('not-found', 404, `no route ${request.method} ${request.url.split('?')[0]}`)),
  );

  app.addSchema(transactionSchema);
  app.addSchema(problemSchema);

  await app.register(swagger, {
    // Name the shared schemas by their $id in the OpenAPI document.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
    openapi: {
      info: {
        title: 'commitd',
        version: '0.1.0',
        description:
          'A durable two-phase commit coordinator. See docs/protocol.md for the client API and the participant protocol.',
      },
      components:
        o.config.server.authToken !== null || o.config.server.tokens.length > 0
          ? { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } }
          : {},
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  // The console's frame and content-type headers on every /docs answer, its
  // static files included (which the plugin's own hooks do not reach).
  app.addHook('onRequest', (request, reply, done) => {
    if (request.routeOptions.url?.startsWith('/docs')) pageHeaders(reply).header('content-security-policy', DOCS_CSP);
    done();
  });

  // Before anything else looks at the request: a proxy's request line is refused.
  app.addHook('onRequest', (request, reply, done) => {
    const refusal = absoluteFormRefusal(request.raw.url ?? '', request.headers.host);
    if (refusal === null) return done();
    sendProblem(reply, problem('invalid-request', 400, refusal));
  });
  // Counted by address before authentication: refusals cost the caller too.
  if (server.rateLimitPerS > 0) installRefusalLimit(app, server.rateLimitPerS);
  installAccessControl(app, o.config, o.readiness);
  // While stopping, every answer closes its connection: a kept-alive one
  // (a client's pool, a peer's) would otherwise hold the server's close
  // open until the grace period ends.
  // A callback rather than an async hook: no promise per answer for a flag
  // that is false until shutdown.
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (o.readiness.stopping) reply.header('connection', 'close');
    done(null, payload);
  });
  if (server.rateLimitPerS > 0) await installRateLimit(app, server.rateLimitPerS);
  // With several instances, the instance's id: a peer probing this address
  // tells a restarted instance (another id) from the one it knew.
  app.get('/healthz', { schema: { hide: true } }, async () =>
    member === null ? { status: 'ok' } : { status: 'ok', instance: member.instanceId },
  );
  if (member !== null) app.get('/v1/cluster', { schema: { hide: true } }, async () => member.view());
  app.get('/readyz', { schema: { hide: true } }, async (_request, reply) => {
    const r = o.readiness;
    if (r.ready && !r.stopping && r.logWritable) return { status: 'ready' };
    const why = r.stopping ? 'shutting down' : !r.ready ? 'recovering' : 'the decision log cannot be written';
    return sendProblem(reply, problem('unavailable', 503, why));
  });
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    reply.type(o.metrics.registry.contentType);
    return o.metrics.registry.metrics();
  });

  transactionRoutes(app, o.coordinator, o.config, o.deploymentId, o.urlPolicy);
  consoleRoutes(app, readConsoleFiles());
  return app;
}

/**
 * Deepest nesting of arrays and objects in a JSON text, from one pass over
 * it (strings skipped). Checked before parsing: a deeply nested body is cheap
 * to send and would overflow the stack of everything that walks it later.
 */
export function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      depth++;
      if (depth > max) max = depth;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}
