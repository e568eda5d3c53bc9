// The composition root: builds every part from Config, starts the listeners, and stops
// everything in order. The only place that chooses implementations (memory today; Redis
// registry and bus plug in here later).

import { randomBytes } from 'node:crypto';
import pino from 'pino';
import type { Logger } from 'pino';
import { accessControl, loadRules } from './auth/acl';
import { loginAsUserId } from './auth/embedded';
import { createJwtVerifier, jwtAuthenticator } from './auth/jwt';
import { originChecker } from './auth/origin';
import { sessionPolicy } from './auth/session-policy';
import { addressableUserId } from './auth/user-id';
import { MemoryRegistry } from './registry/memory-registry';
import type { SessionRegistry } from './registry/registry';
import { Router } from './broker/router';
import type { Config } from './config';
import { StompError } from './session/errors';
import { LifecycleEvents } from './session/events';
import type { Interceptor } from './session/interceptor';
import { Session } from './session/session';
import type { SessionDeps } from './session/session';
import { Admission } from './transport/admission';
import type { Refusal } from './transport/admission';
import type { Connection, TransportKind } from './transport/connection';
import { listenTcp } from './transport/tcp';
import type { ListeningServer } from './transport/tcp';
import { listenWebSocket } from './transport/websocket';

export interface ServerOptions {
  logger?: Logger;
  /** Defaults to an in-memory registry. */
  registry?: SessionRegistry;
  /** Links run after the built-in ones (authentication, user id, access rules, session policy). */
  extraInterceptors?: readonly Interceptor[];
}

export interface RunningServer {
  readonly config: Readonly<Config>;
  /** Bound ports; undefined for a transport that is off. */
  readonly tcpPort: number | undefined;
  readonly wsPort: number | undefined;
  readonly events: LifecycleEvents;
  readonly router: Router;
  readonly registry: SessionRegistry;
  readonly logger: Logger;
  /** Sessions open right now, connected or not yet. */
  sessions(): IterableIterator<Session>;
  /**
   * Stop accepting, close every session (reason `shutdown`), release the ports; connections
   * still open after SHUTDOWN_TIMEOUT_MS are destroyed. Queue messages held in memory are lost.
   */
  stop(): Promise<void>;
}

export async function startServer(config: Readonly<Config>, options: ServerOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? pino({ level: config.logLevel });
  const events = new LifecycleEvents();
  const router = new Router({
    topicPrefix: config.topicPrefix,
    queuePrefix: config.queuePrefix,
    userPrefix: config.userPrefix,
    maxQueueMessages: config.maxQueueMessages,
    messageIdPrefix: randomBytes(4).toString('hex'),
  });
  const registry = options.registry ?? new MemoryRegistry();
  const open = new Map<string, Session>();
  // Built before listening: a bad key or rules file stops the start (ConfigError).
  const authenticator = config.authMode === 'jwt' ? jwtAuthenticator(createJwtVerifier(config.jwt)) : loginAsUserId();
  if (config.authMode === 'none') {
    logger.warn('embedded mode: everything in memory, no Redis, no authentication (the CONNECT login is taken as the user id)');
  }
  const interceptors: Interceptor[] = [
    authenticator,
    addressableUserId(router.destinations),
    accessControl(loadRules(config.aclFile), router.destinations),
    sessionPolicy(
      registry,
      { mode: config.singleSession, maxSessionsPerUser: config.maxSessionsPerUser },
      { kick: (sessionId, code, message) => open.get(sessionId)?.kick(code, message) },
      logger,
    ),
    ...(options.extraInterceptors ?? []),
    { name: 'session-table', onClose: (session) => open.delete(session.id) },
  ];
  const deps: SessionDeps = {
    router,
    interceptors,
    events,
    logger,
    settings: {
      heartbeat: config.heartbeat,
      heartbeatMinMs: config.heartbeatMinMs,
      heartbeatGrace: config.heartbeatGrace,
      connectTimeoutMs: config.connectTimeoutMs,
      frameTimeoutMs: config.frameTimeoutMs,
      limits: config.limits,
      serverName: config.serverName,
      slowConsumerPolicy: config.slowConsumerPolicy,
      maxTransactionFrames: config.maxTransactionFrames,
      maxTransactionBytes: config.maxTransactionBytes,
      maxSubscriptionsPerSession: config.maxSubscriptionsPerSession,
      maxUnacked: config.maxUnacked,
    },
  };
  let isStopping = false;
  const accept = (connection: Connection): void => {
    if (isStopping) {
      connection.destroy();
      return;
    }
    const session = new Session(connection, deps);
    open.set(session.id, session);
  };
  // Over the caps, a TCP peer still hears why, in STOMP (a WebSocket one gets HTTP 503).
  const refuse = (connection: Connection, refusal: Refusal): void => {
    new Session(connection, deps).fail(new StompError('TOO_MANY_CONNECTIONS', refusal.message));
  };
  const admission = new Admission(
    { maxConnections: config.maxConnections, maxConnectionsPerAddress: config.maxConnectionsPerAddress },
    refusalLog(logger),
  );

  const verifyOrigin = originChecker(config.allowedOrigins);
  // Room past the soft limit for what is not a MESSAGE (RECEIPTs) and for one large MESSAGE.
  const writeLimits = {
    writeLimitBytes: config.writeBufferLimitBytes,
    overflowLimitBytes: config.writeBufferLimitBytes * 2 + config.limits.maxFrameBytes,
  };
  const listeners: ListeningServer[] = [];
  let tcpPort: number | undefined;
  let wsPort: number | undefined;
  try {
    if (config.stompPort !== undefined) {
      const tcp = await listenTcp({ host: config.host, port: config.stompPort, limits: writeLimits, admission }, accept, refuse);
      listeners.push(tcp);
      tcpPort = tcp.port;
    }
    if (config.wsPort !== undefined) {
      const ws = await listenWebSocket(
        {
          host: config.host,
          port: config.wsPort,
          path: config.wsPath,
          limits: writeLimits,
          // Room for several frames per message; each frame is still held to maxFrameBytes.
          maxMessageBytes: config.limits.maxFrameBytes * 4 + 64 * 1024,
          handshakeTimeoutMs: config.handshakeTimeoutMs,
          admission,
          ...(verifyOrigin ? { verifyHandshake: verifyOrigin } : {}),
        },
        accept,
      );
      listeners.push(ws);
      wsPort = ws.port;
    }
  } catch (error) {
    await Promise.all(listeners.map((l) => l.close()));
    throw error;
  }
  logger.info({ host: config.host, stompPort: tcpPort, wsPort, wsPath: config.wsPath }, 'stompd listening');

  return {
    config,
    tcpPort,
    wsPort,
    events,
    router,
    registry,
    logger,
    sessions: () => open.values(),
    async stop(): Promise<void> {
      if (isStopping) return;
      isStopping = true;
      // Counted before the sessions go: closing them hands their unacknowledged messages back.
      const held = heldQueueMessages(router, open.values());
      if (held.storedMessages + held.unacknowledgedMessages > 0) {
        // Their senders hold RECEIPTs for them: say what is lost.
        logger.warn(held, `shutdown discards ${held.storedMessages + held.unacknowledgedMessages} queue messages held in memory`);
      }
      const closing = Promise.all(listeners.map((l) => l.close()));
      for (const session of [...open.values()]) session.terminate('shutdown', new StompError('SERVER_SHUTDOWN', 'the server is shutting down'));
      if (!(await settlesWithin(closing, config.shutdownTimeoutMs))) {
        logger.warn({ shutdownTimeoutMs: config.shutdownTimeoutMs, openConnections: admission.openCount }, 'shutdown timeout: destroying the connections still open');
        for (const listener of listeners) listener.destroyConnections();
        await closing;
      }
      logger.info({ discardedQueueMessages: held.storedMessages + held.unacknowledgedMessages }, 'stompd stopped');
    },
  };
}

/** Queue messages only this process holds: stored in queues, or delivered and not acknowledged yet. */
function heldQueueMessages(router: Router, sessions: Iterable<Session>): { storedMessages: number; unacknowledgedMessages: number } {
  let unacknowledgedMessages = 0;
  for (const session of sessions) {
    for (const subscription of session.subscriptions.values()) {
      // Only queue deliveries keep their message (a topic one owes just the ack).
      for (const delivery of subscription.pending.values()) if (delivery.message !== undefined) unacknowledgedMessages++;
    }
  }
  return { storedMessages: router.stats().queuedMessages, unacknowledgedMessages };
}

function settlesWithin(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

/**
 * Refusals are logged at info, at most one line a second (a flood of them must not flood the
 * log): each line counts the refusals since the previous one.
 */
function refusalLog(logger: Logger): (transport: TransportKind, remoteAddress: string, refusal: Refusal) => void {
  let lastLineAt = 0;
  let unlogged = 0;
  return (transport, remoteAddress, refusal) => {
    const now = Date.now();
    if (now - lastLineAt < 1000) {
      unlogged++;
      return;
    }
    logger.info({ transport, remoteAddress, limit: refusal.limit, max: refusal.max, refusedSinceLastLine: unlogged }, 'connection refused: too many connections');
    lastLineAt = now;
    unlogged = 0;
  };
}
