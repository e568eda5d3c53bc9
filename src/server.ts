// The composition root: builds every part from Config, starts the listeners, and stops
// everything in order. The only place that chooses implementations: memory in embedded
// mode (shared-state.ts), Redis (src/cluster/, loaded only then) with REDIS_URL or
// REDIS_CLUSTER_NODES; the backend hooks (src/backend/), the SockJS transport and the HTTP
// sidecar are loaded only when configured. It builds and wires; what each part does is in
// its own file.

import { randomBytes } from 'node:crypto';
import pino from 'pino';
import type { Logger } from 'pino';
import { accessControl, loadRules } from './auth/acl';
import { chooseAuthentication } from './auth/authentication';
import { handshakeChecker } from './auth/origin';
import { revocationCheck } from './auth/revocation';
import { sessionPolicy } from './auth/session-policy';
import { tokenRefresh } from './auth/token-refresh';
import { addressableUserId } from './auth/user-id';
import type { Backend } from './backend/backend';
import { Router } from './broker/router';
import { SharedByteBudget } from './codec';
import type { Config } from './config';
import { companionGuard } from './presence/companion-guard';
import { RoomMatcher } from './presence/presence';
import { PresenceTracker } from './presence/presence-tracker';
import type { Presence } from './presence/presence-tracker';
import type { SessionRegistry } from './registry/registry';
import { createSessionAdmin } from './session/admin';
import type { SessionAdmin } from './session/admin';
import { SessionCounters } from './session/counters';
import type { DestinationHandler } from './session/destination-handler';
import { StompError } from './session/errors';
import { LifecycleEvents } from './session/events';
import { instanceReporter } from './session/instance-report';
import type { Interceptor } from './session/interceptor';
import { Session } from './session/session';
import { SessionTable } from './session/session-table';
import { SubscriptionNotes } from './session/subscription-notes';
import { embeddedState } from './shared-state';
import type { SharedHealth, SharedState, SharedStateDeps } from './shared-state';
import type { Connection } from './transport/connection';
import { openListeners } from './transport/listeners';
import type { Listeners } from './transport/listeners';
import { loadTlsCredentials, logTlsCredentials } from './transport/tls-credentials';
import type { TlsCredentials } from './transport/tls-credentials';
import { TrustedProxies } from './transport/trusted-proxies';

export { ListenError } from './transport/listeners';

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
  /** TLS listeners' bound ports; undefined when off (or no TLS_CERT_FILE). */
  readonly stompTlsPort: number | undefined;
  readonly wssPort: number | undefined;
  /** The HTTP API's port; undefined when HTTP_PORT=off. */
  readonly httpPort: number | undefined;
  readonly events: LifecycleEvents;
  readonly router: Router;
  readonly registry: SessionRegistry;
  readonly logger: Logger;
  /** Bytes of frames in progress and held by transactions, all sessions (MAX_PENDING_FRAME_BYTES). */
  readonly pendingBudget: SharedByteBudget;
  /** Sessions open right now, connected or not yet. */
  sessions(): IterableIterator<Session>;
  /** Kick a session or log a user out, on whichever instance it lives. */
  readonly admin: SessionAdmin;
  /** Rooms (PRESENCE_DESTINATIONS): who is in each, the same answer on every instance. */
  readonly presence: Presence;
  /** With Redis: whether it is unreachable now (and why); undefined in embedded mode. */
  clusterHealth(): SharedHealth | undefined;
  /**
   * Re-read USERS_FILE (AUTH=users): later CONNECTs are checked against the new users,
   * sessions already open stay. A bad file keeps the current users and rejects (ConfigError).
   * Resolves to the number of users; undefined in the other modes (nothing to re-read).
   */
  reloadUsers(): Promise<number | undefined>;
  /**
   * Re-read TLS_CERT_FILE, TLS_KEY_FILE and TLS_CA_FILE: later handshakes use them, open
   * connections keep theirs (logged). A bad file keeps the current ones and throws
   * (TlsFileError). undefined without TLS.
   */
  reloadTls(): TlsCredentials | undefined;
  /**
   * Stop accepting, close every session (reason `shutdown`), release the ports; connections
   * still open after SHUTDOWN_TIMEOUT_MS are destroyed. Queue messages held in memory are lost.
   */
  stop(): Promise<void>;
}

export async function startServer(config: Readonly<Config>, options: ServerOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? pino({ level: config.logLevel });
  // Read before anything starts: a missing or bad file stops the start with one line (TlsFileError, ConfigError).
  const tlsCredentials = config.tls === undefined ? undefined : loadTlsCredentials(config.tls);
  if (tlsCredentials !== undefined) logTlsCredentials(logger, tlsCredentials, 'TLS certificate loaded');
  const authentication = chooseAuthentication(config, logger);
  const accessRules = loadRules(config.aclFile);

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
    ...(config.flowControl !== undefined ? { flow: config.flowControl } : {}),
    relayBacklogBytes: config.relayBacklogBytes,
  });
  const pendingBudget = new SharedByteBudget(config.maxPendingFrameBytes);
  const table = new SessionTable();
  const counters = new SessionCounters();
  const presenceRooms = new RoomMatcher(config.presenceDestinations, config.presenceCompanionSuffix);
  const messageIdPrefix = randomBytes(4).toString('hex');
  // Made once the shared state is (it needs its store), which may ask for it during its start:
  // no local session is in a room before then.
  let presence: PresenceTracker | undefined;
  const sharedDeps: SharedStateDeps = {
    instanceId: config.instanceId,
    revocationTtlSeconds: config.revocationTtlSeconds,
    maxQueueMessages: config.maxQueueMessages,
    maxQueues: config.maxQueues,
    router,
    events,
    logger,
    presenceRooms,
    messageIdPrefix,
    local: { kick: (...args) => table.kick(...args), kickUser: (...args) => table.kickUser(...args) },
    localPresence: { entries: () => presence?.localEntries() ?? new Map(), isInRoom: (sessionId, room) => presence?.isInRoom(sessionId, room) ?? false },
    report: instanceReporter({ instanceId: config.instanceId, sessions: () => table.values(), router, counters }),
  };
  // Several instances share state through Redis (embedded mode never loads ioredis).
  const shared: SharedState = config.redis === undefined ? embeddedState(sharedDeps) : await (await import('./cluster/cluster-node')).startClusterNode({ ...sharedDeps, redis: config.redis });
  const registry = options.registry ?? shared.registry;
  const subscriptionNotes = new SubscriptionNotes(events, registry);
  const tracker = new PresenceTracker({ events, store: shared.presenceStore, matcher: presenceRooms, logger, messageIdPrefix });
  presence = tracker;
  // Application hooks: loaded only when BACKEND_URL is set (no undici otherwise).
  const backend: Backend | undefined =
    config.backend === undefined
      ? undefined
      : (await import('./backend/backend')).startBackend(config.backend, {
          instanceId: config.instanceId,
          router,
          events,
          logger,
          topicPrefix: config.topicPrefix,
          sessionById: (sessionId) => table.get(sessionId),
          outboxes: await shared.eventOutboxes(),
        });

  const interceptors: Interceptor[] = [
    ...(authentication.link !== undefined ? [authentication.link] : []),
    ...(backend !== undefined ? [backend.connectLink] : []),
    revocationCheck(shared.revocations),
    addressableUserId(router.destinations),
    accessControl(accessRules, router.destinations),
    ...(backend !== undefined ? [backend.accessLink] : []),
    companionGuard(presenceRooms),
    sessionPolicy(registry, { mode: config.singleSession, maxSessionsPerUser: config.maxSessionsPerUser }, { kick: table.kickAnywhere(shared.remote) }, logger, config.instanceId),
    ...(options.extraInterceptors ?? []),
    table.link,
  ];
  const destinationHandlers: DestinationHandler[] = [
    ...(authentication.jwtVerifier !== undefined ? [tokenRefresh(config.tokenRefreshDestination, authentication.jwtVerifier)] : []),
    ...(backend?.appHandler !== undefined ? [backend.appHandler] : []),
  ];
  const sessionDeps = {
    ...(destinationHandlers.length > 0 ? { destinationHandlers } : {}),
    router,
    counters,
    interceptors,
    events,
    logger,
    pendingBudget,
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
      maxSubscriptionBytesPerSession: config.maxSubscriptionBytesPerSession,
      maxUnacked: config.maxUnacked,
    },
  };
  let isStopping = false;
  const accept = (connection: Connection): void => {
    if (isStopping) connection.destroy();
    else table.add(new Session(connection, sessionDeps));
  };
  const trustedProxies = new TrustedProxies(config.trustedProxies);
  const verifyHandshake = handshakeChecker({
    allowedOrigins: config.allowedOrigins,
    allowedHosts: config.allowedHosts,
    isUnauthenticated: authentication.isUnauthenticated,
    isCookieCredential: config.authMode === 'jwt',
    // The CONNECT hook sees the handshake's cookies (a Spring session cookie): all of them are ambient credentials then.
    areCookiesCredentials: config.backend?.hooks.has('connect') === true && config.backend.forwardHeaders.includes('cookie'),
    // …and its Authorization header, which a browser fills from its cached HTTP authentication: as ambient as a cookie.
    isAuthorizationCredential: config.backend?.hooks.has('connect') === true && config.backend.forwardHeaders.includes('authorization'),
  });
  let listeners: Listeners;
  try {
    listeners = await openListeners(config, { accept, tlsCredentials, verifyHandshake, trustedProxies, pendingBudget, logger });
  } catch (error) {
    await settlesWithin(shared.stop(), config.shutdownTimeoutMs);
    throw error;
  }

  const admin = createSessionAdmin({
    localSessions: () => table.values(),
    localSession: (sessionId) => table.get(sessionId),
    registry,
    revocations: shared.revocations,
    instanceId: config.instanceId,
    remote: shared.remote,
  });
  // Loaded only when wanted: with HTTP_PORT=off the process carries no Fastify or prom-client.
  const sidecar = config.http.port === undefined ? undefined : (await import('./http/sidecar')).startSidecar;
  const http = await sidecar?.(config, {
    registry,
    admin,
    revocations: shared.revocations,
    jwtVerifier: authentication.jwtVerifier,
    trustedProxies,
    publisher: router,
    ...(router.flow !== undefined ? { publisherFlow: router.flow.account() } : {}),
    presence: tracker,
    queues: router,
    instances: shared.instances,
    readiness: () => {
      if (isStopping) return { isReady: false, reason: 'shutting down' };
      const health = shared.health();
      if (health?.isDegraded === true) return { isReady: false, reason: `Redis unreachable: ${health.reason ?? 'unknown'}` };
      return { isReady: true };
    },
    metrics: {
      connections: () => table.values(),
      sessionCounters: counters,
      router,
      ...(router.flow !== undefined ? { flow: () => router.flow!.stats } : {}),
      queues: router,
      cluster: () => shared.health(),
      ...(backend !== undefined ? { backend: () => backend.stats() } : {}),
      queueSeries: config.http.metricsQueueSeries,
    },
    wsPort: listeners.wsPort,
    logger,
  }).catch(async (error: unknown) => {
    listeners.destroyConnections();
    await listeners.close();
    await settlesWithin(shared.stop(), config.shutdownTimeoutMs);
    throw error;
  });

  return {
    config,
    tcpPort: listeners.tcpPort,
    wsPort: listeners.wsPort,
    stompTlsPort: listeners.stompTlsPort,
    wssPort: listeners.wssPort,
    httpPort: http?.port,
    events,
    router,
    registry,
    logger,
    pendingBudget,
    sessions: () => table.values(),
    presence: tracker,
    admin,
    clusterHealth: () => shared.health(),
    reloadUsers: () => authentication.reloadUsers(),
    reloadTls: () => {
      if (config.tls === undefined) return undefined;
      const fresh = loadTlsCredentials(config.tls);
      listeners.setTlsCredentials(fresh);
      logTlsCredentials(logger, fresh, 'TLS certificate reloaded');
      return fresh;
    },
    async stop(): Promise<void> {
      if (isStopping) return;
      isStopping = true;
      // Counted before the sessions go: closing them hands their unacknowledged messages back.
      // With Redis they are not: the unacknowledged go back to the shared queues.
      const held = router.queues.heldOnlyHere();
      if (held.storedMessages + held.unacknowledgedMessages > 0) {
        // Their senders hold RECEIPTs for them: say what is lost.
        logger.warn(held, `shutdown discards ${held.storedMessages + held.unacknowledgedMessages} queue messages held in memory`);
      }
      const closing = listeners.close();
      for (const session of [...table.values()]) session.terminate('shutdown', new StompError('SERVER_SHUTDOWN', 'the server is shutting down'));
      if (!(await settlesWithin(closing, config.shutdownTimeoutMs))) {
        logger.warn({ shutdownTimeoutMs: config.shutdownTimeoutMs, openConnections: listeners.openCount }, 'shutdown timeout: destroying the connections still open');
        listeners.destroyConnections();
        await closing;
      }
      // Their LEAVEs are decided (in Redis, before the connection goes).
      if (!(await settlesWithin(tracker.whenIdle(), config.shutdownTimeoutMs))) logger.warn('presence leaves took too long: gave up');
      await http?.close().catch((err: unknown) => logger.warn({ err }, 'closing the HTTP API failed'));
      // The sessions' DISCONNECT events are given their chance.
      await backend?.stop(config.shutdownTimeoutMs);
      subscriptionNotes.stop();
      // The sessions' unbinds are on their way; leaving Redis removes what is left of this instance.
      if (!(await settlesWithin(shared.stop(), config.shutdownTimeoutMs))) logger.warn('leaving Redis took too long: gave up');
      router.close();
      logger.info({ discardedQueueMessages: held.storedMessages + held.unacknowledgedMessages }, 'stompd stopped');
    },
  };
}

/** Whether `promise` settled within `timeoutMs` (it goes on either way). */
function settlesWithin(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    void promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
