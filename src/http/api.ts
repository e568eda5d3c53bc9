// The HTTP sidecar (Fastify) beside the STOMP listeners: session inspection, admin actions,
// server-side publish, health and metrics. It depends on interfaces only (registry, admin,
// publisher, metrics registry); server.ts builds them. Every /api route needs an admin
// credential (auth.ts); every route declares JSON schemas, from which Fastify validates and
// serializes and @fastify/swagger serves an OpenAPI 3 document at /api/openapi.json.

import swagger from '@fastify/swagger';
import Fastify, { LogController } from 'fastify';
import type { FastifyBaseLogger, FastifyError, FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { DestinationKind, UserDestination } from '../broker/destinations';
import type { Message } from '../broker/message';
import type { Header } from '../codec';
import { InvalidCursorError, RegistryUnavailableError } from '../registry/registry';
import type { SessionRegistry } from '../registry/registry';
import type { SessionAdmin } from '../session/admin';
import { FailedAuthLimiter } from './auth';
import type { AdminVerdict } from './auth';
import type { QueueRefusal, QueueStat } from '../broker/queue-backend';
import type { Member } from '../presence/presence';
import { adminRoutes } from './routes/admin';
import { destinationRoutes } from './routes/destinations';
import { healthRoutes } from './routes/health';
import { publishRoutes } from './routes/publish';
import { sessionRoutes } from './routes/sessions';
import { hookWebhooks } from './hook-schemas';

declare module 'fastify' {
  interface FastifyRequest {
    /** Who is acting, once authenticated (for logs and the publish's user-id). */
    adminId: string;
  }
}

/** What a server-side publish needs of the router. */
export interface MessagePublisher {
  kindOf(destination: string): DestinationKind | undefined;
  readonly destinations: { parseUser(destination: string): UserDestination | undefined };
  createMessage(destination: string, headers: readonly Header[], body: Buffer, senderUserId: string): Message;
  /** Whether the queues can take these messages now (MAX_QUEUES, MAX_TOTAL_QUEUE_BYTES; Redis reachable). */
  admit(messages: readonly Message[]): QueueRefusal | undefined | Promise<QueueRefusal | undefined>;
  /** A queue publish may settle later (Redis): a refusal then says why it was not stored. */
  publish(message: Message): void | Promise<QueueRefusal | undefined>;
}

export interface HttpApiDeps {
  registry: SessionRegistry;
  admin: SessionAdmin;
  publisher: MessagePublisher;
  authenticate(authorization: string | undefined): Promise<AdminVerdict>;
  readiness(): { isReady: boolean; reason?: string };
  metrics: Registry;
  presence: { isRoom(destination: string): boolean; members(destination: string): Promise<Member[]> };
  queues: { queueStats(): Promise<QueueStat[]> };
  /** Largest message body a publish may carry (MAX_FRAME_BYTES). */
  maxBodyBytes: number;
  logger: Logger;
}

export interface HttpApi {
  readonly port: number;
  close(): Promise<void>;
}

export async function startHttpApi(listen: { host: string; port: number }, deps: HttpApiDeps): Promise<HttpApi> {
  const app = Fastify({
    loggerInstance: deps.logger.child({ component: 'http' }) as FastifyBaseLogger,
    // Per-request lines would flood the log at scrape rate; refusals and actions log their own.
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { maxParamLength: 1000 },
    // Stop drops keep-alive connections instead of waiting for their clients to leave.
    forceCloseConnections: true,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
  });
  await app.register(swagger, {
    openapi: {
      // 3.1: `webhooks` describes the hook calls stompd makes to the application's backend.
      openapi: '3.1.0',
      info: { title: 'stompd HTTP API', description: "Sessions, admin actions and server-side publish for a stompd broker; under webhooks, the hook contract (the calls stompd makes to BACKEND_URL)", version: '1' },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN, or a JWT holding one of ADMIN_ROLES' } } },
      webhooks: hookWebhooks,
    },
  });
  app.decorateRequest('adminId', '');
  guardApi(app, deps);
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof InvalidCursorError) return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: `querystring/cursor: ${error.message}` });
    if (error.validation !== undefined || (error.statusCode !== undefined && error.statusCode < 500)) {
      const statusCode = error.statusCode ?? 400;
      // "must NOT have additional properties" names the object, not the field: add it.
      const extra = error.validation?.[0]?.params?.additionalProperty;
      const message = typeof extra === 'string' ? `${error.message}: ${extra}` : error.message;
      return reply.code(statusCode).send({ statusCode, error: statusCode === 413 ? 'Payload Too Large' : 'Bad Request', message });
    }
    // A registry call failing while Redis is away is an outage, not a bug.
    const readiness = deps.readiness();
    if (error instanceof RegistryUnavailableError || !readiness.isReady) {
      request.log.warn({ err: error.message, url: request.url }, 'HTTP API: registry unreachable');
      return reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', message: `the session registry is unreachable right now${readiness.reason ? ` (${readiness.reason})` : ''}` });
    }
    request.log.error({ err: error, url: request.url }, 'HTTP API: unexpected error');
    return reply.code(500).send({ statusCode: 500, error: 'Internal Server Error', message: 'internal error' });
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no route ${request.method} ${request.url.split('?')[0]}` }));

  await app.register(async (scope) => sessionRoutes(scope, deps));
  await app.register(async (scope) => adminRoutes(scope, deps));
  await app.register(async (scope) => publishRoutes(scope, deps));
  await app.register(async (scope) => destinationRoutes(scope, deps));
  await app.register(async (scope) => healthRoutes(scope, deps));
  app.get('/api/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.listen({ host: listen.host, port: listen.port });
  const address = app.server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : listen.port,
    close: () => app.close(),
  };
}

/** The routes any client may call: what an orchestrator's probes and a Prometheus scrape send. */
const PUBLIC_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/readyz', '/metrics']);

/**
 * Everything but the public routes needs an admin, judged by the route the request matched
 * (never by the raw URL: `/%61pi/...` is routed to /api/... after decoding). An address that
 * failed too often is turned away before its credential is even looked at.
 */
function guardApi(app: FastifyInstance, deps: HttpApiDeps): void {
  const limiter = new FailedAuthLimiter();
  app.addHook('onRequest', async (request, reply) => {
    if (PUBLIC_ROUTES.has(request.routeOptions.url ?? '')) return;
    const address = request.ip;
    const waitMs = limiter.retryAfterMs(address);
    if (waitMs > 0) {
      return reply
        .code(429)
        .header('retry-after', String(Math.ceil(waitMs / 1000)))
        .send({ statusCode: 429, error: 'Too Many Requests', message: 'too many failed authentications from this address; try again later' });
    }
    const verdict = await deps.authenticate(request.headers.authorization);
    if (!verdict.isAdmin) {
      limiter.recordFailure(address);
      request.log.info({ remoteAddress: address, statusCode: verdict.statusCode, url: request.url.split('?')[0] }, 'HTTP API: authentication refused');
      return reply
        .code(verdict.statusCode)
        .header('www-authenticate', 'Bearer')
        .send({ statusCode: verdict.statusCode, error: verdict.statusCode === 401 ? 'Unauthorized' : 'Forbidden', message: verdict.message });
    }
    request.adminId = verdict.adminId;
    return undefined;
  });
}
