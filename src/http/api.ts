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
import type { FlowAccount } from '../broker/flow';
import type { Message } from '../broker/message';
import type { Header } from '../codec';
import { InvalidCursorError, RegistryUnavailableError } from '../registry/registry';
import type { SessionRegistry } from '../registry/registry';
import type { SessionAdmin } from '../session/admin';
import { addressKey } from '../auth/address-key';
import { FailedAuthLimiter } from './auth';
import type { AdminVerdict } from './auth';
import type { QueueRefusal, QueueStat } from '../broker/queue-backend';
import type { Member } from '../presence/presence';
import type { InstanceDirectory } from '../registry/instances';
import { adminRoutes } from './routes/admin';
import { destinationRoutes } from './routes/destinations';
import { healthRoutes } from './routes/health';
import { overviewRoutes } from './routes/overview';
import { PAGE_ROUTES, pageRoutes } from './routes/pages';
import type { PagesOptions } from './routes/pages';
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
  publish(message: Message, account?: FlowAccount): void | Promise<QueueRefusal | undefined>;
  /** While the relay to other instances cannot take more: what to wait for before answering. */
  relayBackpressure?(): Promise<void> | undefined;
}

export interface HttpApiDeps {
  registry: SessionRegistry;
  admin: SessionAdmin;
  publisher: MessagePublisher;
  /** The HTTP API as one publisher under flow control (a publish answers once it may go on); undefined: off. */
  publisherFlow?: FlowAccount;
  authenticate: (authorization: string | undefined) => Promise<AdminVerdict>;
  /** Set when /metrics needs a credential (METRICS_TOKEN or an admin's); undefined: /metrics is public. */
  authenticateMetrics?: (authorization: string | undefined) => Promise<AdminVerdict>;
  /**
   * Set when the sidecar needs no credential (isOpen): why a request is refused (a Host that
   * is not loopback or ALLOWED_HOSTS, a page's Origin elsewhere), or undefined to answer it.
   * Applies to every route, present and future (the dashboard too).
   */
  foreignRequestRefusal?: (host: string | undefined, origin: string | undefined) => { message: string } | undefined;
  readiness(): { isReady: boolean; reason?: string };
  metrics: Registry;
  presence: {
    isRoom(destination: string): boolean;
    isCompanion(destination: string): boolean;
    members(destination: string): Promise<Member[]>;
    rooms(limit: number): Promise<{ destination: string; members: Member[] }[]>;
  };
  /** Every instance with its running totals (the dashboard's instances and rates). */
  instances: InstanceDirectory;
  /** The browser pages: the dashboard always, the demo with DEMO=1. */
  pages: PagesOptions;
  queues: { queueStats(): Promise<QueueStat[]> };
  /** Largest message body a publish may carry (MAX_FRAME_BYTES). */
  maxBodyBytes: number;
  logger: Logger;
}

export interface HttpApi {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * `isTrustedProxy`: a peer whose X-Forwarded-For is believed (TRUSTED_PROXIES), so that
 * request.ip, which the failed-login limiter and the logs use, is the client behind it.
 */
export async function startHttpApi(listen: { host: string; port: number; isTrustedProxy?: (address: string) => boolean }, deps: HttpApiDeps): Promise<HttpApi> {
  const isTrustedProxy = listen.isTrustedProxy;
  // Whatever Fastify logs of a request on its own shows its path, never its query string
  // (a token may travel there: `?access_token=…`). Typed as Fastify's logger, not pino's, so
  // the app is the plain FastifyInstance the routes take.
  const httpLogger: FastifyBaseLogger = deps.logger.child({ component: 'http' }, { serializers: { req: (request: { method?: string; url?: string }) => ({ method: request.method, url: pathOf(request.url) }) } });
  const app = Fastify({
    // Walked from the socket's peer leftwards through X-Forwarded-For while the hop is trusted.
    ...(isTrustedProxy !== undefined ? { trustProxy: (address: string) => isTrustedProxy(address) } : {}),
    loggerInstance: httpLogger,
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
      info: { title: 'stompd HTTP API', description: 'Sessions, admin actions and server-side publish for a stompd broker; under webhooks, the hook contract (the calls stompd makes to BACKEND_URL)', version: '1' },
      components: { securitySchemes: { bearerAuth: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN, or a JWT holding one of ADMIN_ROLES' } } },
      webhooks: hookWebhooks,
    },
  });
  app.decorateRequest('adminId', '');
  if (deps.foreignRequestRefusal !== undefined) guardOpenSidecar(app, deps.foreignRequestRefusal);
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
      request.log.warn({ err: error.message, url: pathOf(request.url) }, 'HTTP API: registry unreachable');
      return reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', message: `the session registry is unreachable right now${readiness.reason ? ` (${readiness.reason})` : ''}` });
    }
    request.log.error({ err: error, url: pathOf(request.url) }, 'HTTP API: unexpected error');
    return reply.code(500).send({ statusCode: 500, error: 'Internal Server Error', message: 'internal error' });
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no route ${request.method} ${pathOf(request.url)}` }));

  await app.register(async (scope) => sessionRoutes(scope, deps));
  await app.register(async (scope) => adminRoutes(scope, deps));
  await app.register(async (scope) => publishRoutes(scope, deps));
  await app.register(async (scope) => destinationRoutes(scope, deps));
  await app.register(async (scope) => healthRoutes(scope, deps));
  await app.register(async (scope) => overviewRoutes(scope, deps));
  await app.register(async (scope) => pageRoutes(scope, deps));
  app.get('/api/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.listen({ host: listen.host, port: listen.port });
  const address = app.server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : listen.port,
    close: () => app.close(),
  };
}

/** A request URL as logs and answers may show it: the path, never the query string (it may carry a token). */
export function pathOf(url: string | undefined): string {
  const path = (url ?? '').split('?')[0]!;
  return path.length > 200 ? `${path.slice(0, 200)}…` : path;
}

/**
 * The routes any client may call: what an orchestrator's probes send, and the browser pages
 * (which hold no data: they call /api with their user's credential). /metrics is public
 * unless guarded (METRICS_ROUTE, below).
 */
const PUBLIC_ROUTES: ReadonlySet<string> = new Set(['/healthz', '/readyz', ...PAGE_ROUTES]);
const METRICS_ROUTE = '/metrics';

/**
 * An open sidecar (no credential asked) trusts whoever reaches it: loopback. A page elsewhere
 * could still reach it from a browser on this machine, by DNS rebinding (its requests then
 * carry its own name as Host) or directly (they carry its Origin): both are refused, on every
 * route, before anything else runs.
 */
function guardOpenSidecar(app: FastifyInstance, refusalOf: NonNullable<HttpApiDeps['foreignRequestRefusal']>): void {
  app.addHook('onRequest', async (request, reply) => {
    const origin = request.headers.origin;
    const refusal = refusalOf(request.headers.host, typeof origin === 'string' ? origin : undefined);
    if (refusal === undefined) return undefined;
    request.log.info({ remoteAddress: request.ip, url: pathOf(request.url), host: String(request.headers.host ?? '').slice(0, 200), origin: String(origin ?? '').slice(0, 200) }, 'HTTP API: foreign request refused');
    return reply.code(403).send({ statusCode: 403, error: 'Forbidden', message: refusal.message });
  });
}

/**
 * Everything but the public routes needs an admin (/metrics, when guarded, METRICS_TOKEN or an admin), judged by the route the request matched
 * (never by the raw URL: `/%61pi/...` is routed to /api/... after decoding). The credential is
 * always checked first: a valid one is served whatever its address did, so a noisy client
 * behind the same NAT or proxy cannot lock the admins out. Failed attempts are counted per
 * client (request.ip: the real client behind trusted proxies; an IPv6 /64 counts as one);
 * past the limit that client's failures get 429 until its window ends.
 */
function guardApi(app: FastifyInstance, deps: HttpApiDeps): void {
  const limiter = new FailedAuthLimiter();
  app.addHook('onRequest', async (request, reply) => {
    const route = request.routeOptions.url ?? '';
    if (PUBLIC_ROUTES.has(route)) return;
    const isMetrics = route === METRICS_ROUTE;
    if (isMetrics && deps.authenticateMetrics === undefined) return;
    const verdict = await (isMetrics ? deps.authenticateMetrics! : deps.authenticate)(request.headers.authorization);
    if (verdict.isAdmin) {
      request.adminId = verdict.adminId;
      return undefined;
    }
    const client = addressKey(request.ip);
    const waitMs = limiter.retryAfterMs(client);
    if (waitMs > 0) {
      return reply
        .code(429)
        .header('retry-after', String(Math.ceil(waitMs / 1000)))
        .send({ statusCode: 429, error: 'Too Many Requests', message: 'too many failed authentications from this address; try again later' });
    }
    limiter.recordFailure(client);
    request.log.info({ remoteAddress: request.ip, statusCode: verdict.statusCode, url: pathOf(request.url) }, 'HTTP API: authentication refused');
    return reply
      .code(verdict.statusCode)
      .header('www-authenticate', 'Bearer')
      .send({ statusCode: verdict.statusCode, error: verdict.statusCode === 401 ? 'Unauthorized' : 'Forbidden', message: verdict.message });
  });
}
