// The composition root: builds every part from Config, starts the listeners, and stops
// everything in order. The only place that chooses implementations (memory today; Redis
// registry and bus plug in here later).

import { randomBytes } from 'node:crypto';
import pino from 'pino';
import { SharedByteBudget } from './codec';
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
import type { Connection } from './transport/connection';
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
  /** Bytes of frames in progress and held by transactions, all sessions (MAX_PENDING_FRAME_BYTES). */
  readonly pendingBudget: SharedByteBudget;
  /** Sessions open right now, connected or not yet. */
  sessions(): IterableIterator<Session>;
  /** Stop accepting, close every session (reason `shutdown`), release the ports. */
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
    maxQueueBytes: config.maxQueueBytes,
    maxTotalQueueBytes: config.maxTotalQueueBytes,
    maxQueues: config.maxQueues,
    logger,
    messageIdPrefix: randomBytes(4).toString('hex'),
  });
  const pendingBudget = new SharedByteBudget(config.maxPendingFrameBytes);
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
    pendingBudget,
    settings: {
      heartbeat: config.heartbeat,
      heartbeatGrace: config.heartbeatGrace,
      connectTimeoutMs: config.connectTimeoutMs,
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

  const verifyOrigin = originChecker(config.allowedOrigins);
  // Room past the soft limit for what is not a MESSAGE (RECEIPTs) and for one MESSAGE of the
  // largest frame: 6 MiB with the defaults, only ever reached by a client that stops reading
  // (an idle connection holds none of it).
  const writeLimits = {
    writeLimitBytes: config.writeBufferLimitBytes,
    overflowLimitBytes: config.writeBufferLimitBytes * 2 + config.limits.maxFrameBytes,
  };
  const listeners: ListeningServer[] = [];
  let tcpPort: number | undefined;
  let wsPort: number | undefined;
  try {
    if (config.stompPort !== undefined) {
      const tcp = await listenTcp({ host: config.host, port: config.stompPort, limits: writeLimits }, accept);
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
          // stompjs sends one frame per message, and a frame is held to maxFrameBytes anyway:
          // the 64 KiB lets a frame just over the limit reach the decoder, which answers
          // FRAME_TOO_LARGE, rather than the WebSocket closing with 1009.
          maxMessageBytes: config.limits.maxFrameBytes + 64 * 1024,
          pendingBudget,
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
    pendingBudget,
    sessions: () => open.values(),
    async stop(): Promise<void> {
      if (isStopping) return;
      isStopping = true;
      const closing = listeners.map((l) => l.close());
      for (const session of [...open.values()]) session.terminate('shutdown', new StompError('SERVER_SHUTDOWN', 'the server is shutting down'));
      await Promise.all(closing);
      logger.info('stompd stopped');
    },
  };
}
