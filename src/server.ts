// The composition root: builds every part from Config, starts the listeners, and stops
// everything in order. The only place that chooses implementations (memory today; Redis
// registry and bus plug in here later).

import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import pino from 'pino';
import { SharedByteBudget, encodeFrame } from './codec';
import type { Logger } from 'pino';
import { accessControl, loadRules } from './auth/acl';
import { loginAsUserId } from './auth/embedded';
import { createJwtVerifier, jwtAuthenticator } from './auth/jwt';
import { isLoopbackHostname, localOnlyGuard, originList } from './auth/host';
import { handshakeChecker } from './auth/origin';
import type { HandshakeRefusal, HandshakeRefusalKind } from './auth/origin';
import { sessionPolicy } from './auth/session-policy';
import { addressableUserId } from './auth/user-id';
import { UsersFile, passwordAuthenticator } from './auth/users';
import { MemoryRevocations, revocationCheck } from './auth/revocation';
import { MemoryRegistry } from './registry/memory-registry';
import type { SessionRegistry } from './registry/registry';
import { Router } from './broker/router';
import type { Config } from './config';
import type { HttpApi } from './http/api';
import type { Backend } from './backend/backend';
import { tokenRefresh } from './auth/token-refresh';
import type { DestinationHandler } from './session/destination-handler';
import { closeSessions, createSessionAdmin } from './session/admin';
import type { SessionAdmin } from './session/admin';
import { SessionCounters } from './session/counters';
import { SubscriptionNotes } from './session/subscription-notes';
import { singleInstance } from './registry/instances';
import type { InstanceReport } from './registry/instances';
import { StompError } from './session/errors';
import { LifecycleEvents } from './session/events';
import type { Interceptor } from './session/interceptor';
import { Session } from './session/session';
import { MemoryPresenceStore } from './presence/memory-presence';
import { companionGuard } from './presence/companion-guard';
import { RoomMatcher } from './presence/presence';
import { PresenceTracker } from './presence/presence-tracker';
import type { Presence } from './presence/presence-tracker';
import type { SessionDeps } from './session/session';
import { Admission } from './transport/admission';
import type { Refusal } from './transport/admission';
import type { Connection, TransportKind } from './transport/connection';
import { listenTcp } from './transport/tcp';
import type { ListeningServer, RejectReason } from './transport/tcp';
import { loadTlsCredentials } from './transport/tls-credentials';
import type { TlsCredentials } from './transport/tls-credentials';
import { TrustedProxies } from './transport/trusted-proxies';
import { formatAddress, socketPeer } from './transport/client-address';
import { forwardedClientAddress } from './transport/forwarded';
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
  clusterHealth(): { isDegraded: boolean; reason: string | undefined } | undefined;
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

/** A listener could not be opened (port taken, no permission, HOST not here): names the variable to change. */
export class ListenError extends Error {
  readonly variable: string;

  constructor(variable: string, address: string, error: NodeJS.ErrnoException) {
    const why =
      error.code === 'EADDRINUSE' ? 'address already in use'
      : error.code === 'EACCES' ? 'permission denied'
      : error.code === 'EADDRNOTAVAIL' ? 'not an address of this machine'
      : error.code === 'ENOTFOUND' ? 'host name not found'
      : error.message;
    super(`cannot listen on ${address} (${variable}): ${why}`);
    this.name = 'ListenError';
    this.variable = variable;
  }
}

function listenFailure(error: unknown, host: string, port: number, portVariable: string): unknown {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === undefined) return error;
  const variable = code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' ? 'HOST' : portVariable;
  return new ListenError(variable, `${host}:${port}`, error as NodeJS.ErrnoException);
}

export async function startServer(config: Readonly<Config>, options: ServerOptions = {}): Promise<RunningServer> {
  const logger = options.logger ?? pino({ level: config.logLevel });
  // Read before anything starts: a missing or bad file stops the start with one line (TlsFileError).
  const tlsCredentials = config.tls === undefined ? undefined : loadTlsCredentials(config.tls);
  if (tlsCredentials !== undefined) logTlsCredentials(logger, tlsCredentials, 'TLS certificate loaded');
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
  const open = new Map<string, Session>();
  const presenceRooms = new RoomMatcher(config.presenceDestinations, config.presenceCompanionSuffix);
  const messageIdPrefix = randomBytes(4).toString('hex');
  const counters = new SessionCounters();
  const startedAt = Date.now();
  // This instance's totals, as GET /api/instances lists them (with Redis, published with each
  // liveness refresh, from the cluster layer's start on: so declared before it).
  function instanceReport(): InstanceReport {
    let sessions = 0;
    for (const session of open.values()) if (session.state === 'connected') sessions++;
    const stats = router.stats();
    return {
      instanceId: config.instanceId,
      startedAt,
      reportedAt: Date.now(),
      isDegraded: false, // the cluster layer says when it is
      degradedReason: null,
      counters: {
        connections: open.size,
        sessions,
        published: { ...router.published },
        delivered: { topic: router.delivered.topic, queue: stats.deliveredFromQueues, user: router.delivered.user },
        dropped: { topic: router.dropped.topic, queue: stats.droppedFromQueues, user: router.dropped.user },
        errors: { ...counters.errorsSent },
        bytesIn: counters.bytesIn,
        heartbeatTimeouts: counters.heartbeatTimeouts,
      },
    };
  }
  // Several instances: loaded only when Redis is configured (embedded mode never loads ioredis).
  const cluster =
    config.redis === undefined
      ? undefined
      : await (await import('./cluster/cluster-node')).startClusterNode({
          redis: config.redis,
          instanceId: config.instanceId,
          revocationTtlSeconds: config.revocationTtlSeconds,
          maxQueueMessages: config.maxQueueMessages,
          maxQueues: config.maxQueues,
          router,
          events,
          logger,
          presenceRooms,
          kickLocal: (sessionId, code, message, reason) => {
            const session = open.get(sessionId);
            session?.kick(code, message, reason);
            return session !== undefined;
          },
          kickLocalUser: (userId, code, message, reason) => closeSessions(open.values(), userId, code, message, reason),
          closeAllLocal: (code, message, reason) => closeSessions(open.values(), undefined, code, message, reason),
          report: () => instanceReport(),
        });
  const registry = options.registry ?? cluster?.registry ?? new MemoryRegistry();
  const subscriptionNotes = new SubscriptionNotes(events, registry);
  const revocations = cluster?.revocations ?? new MemoryRevocations(config.revocationTtlSeconds * 1000);
  const presence = new PresenceTracker({
    events,
    store: cluster?.presence ?? new MemoryPresenceStore((message) => router.publish(message), presenceRooms, messageIdPrefix),
    matcher: presenceRooms,
    logger,
    messageIdPrefix,
  });
  if (cluster !== undefined) {
    cluster.presence.localEntries = () => presence.localEntries();
    cluster.presence.isLocalEntry = (sessionId, room) => presence.isInRoom(sessionId, room);
  }
  // Built before listening: a bad key or rules file stops the start (ConfigError).
  const usersFile = config.authMode === 'users' ? new UsersFile(config.usersFile!) : undefined;
  // One verifier for STOMP logins and admin JWTs on the HTTP API.
  const jwtVerifier = config.authMode === 'jwt' ? createJwtVerifier(config.jwt) : undefined;
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
          sessionById: (sessionId) => open.get(sessionId),
          ...(cluster !== undefined ? { sharedOutbox: cluster.eventOutboxes } : {}),
        });
  // A CONNECT hook authenticates by itself: the bare login header is then not a user id.
  const isHookAuthenticated = config.backend?.hooks.has('connect') === true && config.authMode === 'none';
  const authenticator =
    jwtVerifier !== undefined ? jwtAuthenticator(jwtVerifier)
    : usersFile !== undefined ? passwordAuthenticator(usersFile)
    : isHookAuthenticated ? undefined
    : loginAsUserId();
  const warnIfUsersFileExposed = (): void => {
    const exposedMode = usersFile?.exposedMode();
    if (exposedMode !== undefined) {
      logger.warn({ usersFile: usersFile!.path, mode: `0${exposedMode.toString(8)}` }, 'USERS_FILE is readable or writable by other users than its owner: chmod 600 it');
    }
  };
  if (usersFile !== undefined) {
    logger.info({ usersFile: usersFile.path, users: usersFile.size }, 'users mode: login and passcode checked against USERS_FILE');
    warnIfUsersFileExposed();
  }
  if (config.authMode === 'none' && config.wsPort !== undefined && !isLoopbackHostname(config.host) && config.allowedHosts.length === 0) {
    logger.warn({ host: config.host }, 'AUTH=none beyond loopback: WebSocket handshakes addressed to a name that is not loopback get 403 (DNS rebinding); list the names clients use in ALLOWED_HOSTS');
  }
  if (config.authMode === 'none' && !isHookAuthenticated) {
    logger.warn(
      config.redis === undefined
        ? 'embedded mode: everything in memory, no Redis, no authentication (the CONNECT login is taken as the user id)'
        : 'no authentication: the CONNECT login is taken as the user id (set JWT_SECRET, JWT_PUBLIC_KEY, JWT_JWKS_URL or USERS_FILE)',
    );
  }
  const interceptors: Interceptor[] = [
    ...(authenticator !== undefined ? [authenticator] : []),
    ...(backend !== undefined ? [backend.connectLink] : []),
    revocationCheck(revocations),
    addressableUserId(router.destinations),
    accessControl(loadRules(config.aclFile), router.destinations),
    ...(backend !== undefined ? [backend.accessLink] : []),
    companionGuard(presenceRooms),
    sessionPolicy(
      registry,
      { mode: config.singleSession, maxSessionsPerUser: config.maxSessionsPerUser },
      {
        kick: (sessionId, code, message) => {
          const session = open.get(sessionId);
          if (session !== undefined) session.kick(code, message);
          else void cluster?.remote.kickSession(sessionId, code, message); // it lives on another instance
        },
      },
      logger,
      config.instanceId,
    ),
    ...(options.extraInterceptors ?? []),
    { name: 'session-table', onClose: (session) => open.delete(session.id) },
  ];
  const destinationHandlers: DestinationHandler[] = [];
  if (jwtVerifier !== undefined) destinationHandlers.push(tokenRefresh(config.tokenRefreshDestination, jwtVerifier));
  if (backend?.appHandler !== undefined) destinationHandlers.push(backend.appHandler);
  const deps: SessionDeps = {
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
    if (isStopping) {
      connection.destroy();
      return;
    }
    const session = new Session(connection, deps);
    open.set(session.id, session);
  };
  // Over the caps, a TCP peer still hears why, in STOMP (a WebSocket one gets HTTP 503).
  // Over the caps: one ERROR and a close, no session (nothing to log per connection: the
  // admission's rate-limited line says it).
  const refuse = (connection: Connection, refusal: Refusal): void => {
    const text = `TOO_MANY_CONNECTIONS: ${refusal.message}`;
    connection.write(encodeFrame({ command: 'ERROR', headers: [['message', text], ['content-type', 'text/plain']], body: Buffer.from(`${text}\n`) }, '1.0'));
    connection.end();
  };
  const admission = new Admission(
    { maxConnections: config.maxConnections, maxConnectionsPerAddress: config.maxConnectionsPerAddress },
    refusalLog(logger),
  );

  const verifyHandshake = handshakeChecker({
    allowedOrigins: config.allowedOrigins,
    allowedHosts: config.allowedHosts,
    isUnauthenticated: config.authMode === 'none' && !isHookAuthenticated,
    isCookieCredential: config.authMode === 'jwt',
    // The CONNECT hook sees the handshake's cookies (a Spring session cookie): all of them are ambient credentials then.
    areCookiesCredentials: config.backend?.hooks.has('connect') === true && config.backend.forwardHeaders.includes('cookie'),
  });
  const trustedProxies = new TrustedProxies(config.trustedProxies);
  const onRejected = rejectionLog(logger);
  // Room past the soft limit for what is not a MESSAGE (RECEIPTs) and for one MESSAGE of the
  // largest frame: 6 MiB with the defaults, only ever reached by a client that stops reading
  // (an idle connection holds none of it).
  const writeLimits = {
    writeLimitBytes: config.writeBufferLimitBytes,
    overflowLimitBytes: config.writeBufferLimitBytes * 2 + config.limits.maxFrameBytes,
  };
  const listeners: ListeningServer[] = [];
  const tlsListeners: ListeningServer[] = [];
  let tcpPort: number | undefined;
  let wsPort: number | undefined;
  let stompTlsPort: number | undefined;
  let wssPort: number | undefined;
  // stompjs sends one frame per message, and a frame is held to maxFrameBytes anyway:
  // the 64 KiB lets a frame just over the limit reach the decoder, which answers
  // FRAME_TOO_LARGE, rather than the WebSocket closing with 1009.
  const maxMessageBytes = config.limits.maxFrameBytes + 64 * 1024;
  // Loaded only when wanted: without SOCKJS_PATH the process carries no sockjs. Served on
  // the WebSocket listeners (WS_PORT, WSS_PORT) beside WS_PATH.
  const sockjsMount =
    config.sockjsPath === undefined
      ? undefined
      : (await import('./transport/sockjs')).sockJsMount(
          { path: config.sockjsPath, limits: writeLimits, maxMessageBytes, pendingBudget, messageTimeoutMs: config.frameTimeoutMs, logger },
          accept,
        );
  const wsOptions = {
    host: config.host,
    path: config.wsPath,
    limits: writeLimits,
    maxMessageBytes,
    pendingBudget,
    messageTimeoutMs: config.frameTimeoutMs,
    handshakeTimeoutMs: config.handshakeTimeoutMs,
    admission,
    onRejected,
    ...(trustedProxies.isEmpty ? {} : { forwarded: { trusted: trustedProxies, header: config.forwardedHeader } }),
    // The refusal line names the client a trusted proxy reports, as the session would.
    ...(verifyHandshake
      ? { verifyHandshake: loggedHandshakeCheck(verifyHandshake, logger, (request) => formatAddress(forwardedClientAddress(socketPeer(request.socket), request.headers, config.forwardedHeader, trustedProxies))) }
      : {}),
    ...(sockjsMount ? { mount: sockjsMount } : {}),
  };
  try {
    if (config.stompPort !== undefined) {
      const stompPort = config.stompPort;
      const tcp = await listenTcp(
        {
          host: config.host,
          port: stompPort,
          limits: writeLimits,
          admission,
          onRejected,
          ...(config.proxyProtocol ? { proxyProtocol: { trusted: trustedProxies, timeoutMs: config.handshakeTimeoutMs } } : {}),
        },
        accept,
        refuse,
      ).catch((error: unknown) => {
        throw listenFailure(error, config.host, stompPort, 'STOMP_PORT');
      });
      listeners.push(tcp);
      tcpPort = tcp.port;
    }
    if (config.wsPort !== undefined) {
      const ws = await listenWebSocket({ ...wsOptions, port: config.wsPort }, accept).catch((error: unknown) => {
        throw listenFailure(error, config.host, config.wsPort!, 'WS_PORT');
      });
      listeners.push(ws);
      wsPort = ws.port;
    }
    if (config.tls !== undefined && tlsCredentials !== undefined) {
      const tlsOptions = { ...tlsCredentials.options, handshakeTimeout: config.handshakeTimeoutMs };
      if (config.tls.stompTlsPort !== undefined) {
        const port = config.tls.stompTlsPort;
        const tcp = await listenTcp({ host: config.host, port, limits: writeLimits, admission, onRejected, tls: tlsOptions }, accept, refuse).catch((error: unknown) => {
          throw listenFailure(error, config.host, port, 'STOMP_TLS_PORT');
        });
        listeners.push(tcp);
        tlsListeners.push(tcp);
        stompTlsPort = tcp.port;
      }
      if (config.tls.wssPort !== undefined) {
        const port = config.tls.wssPort;
        const wss = await listenWebSocket({ ...wsOptions, port, tls: tlsOptions }, accept).catch((error: unknown) => {
          throw listenFailure(error, config.host, port, 'WSS_PORT');
        });
        listeners.push(wss);
        tlsListeners.push(wss);
        wssPort = wss.port;
      }
    }
  } catch (error) {
    await Promise.all(listeners.map((l) => l.close()));
    throw error;
  }
  logger.info(
    { host: config.host, stompPort: tcpPort, wsPort, wsPath: config.wsPath, sockjsPath: config.sockjsPath, stompTlsPort, wssPort, ...(trustedProxies.isEmpty ? {} : { trustedProxies: config.trustedProxies, proxyProtocol: config.proxyProtocol }) },
    'stompd listening',
  );

  const admin = createSessionAdmin({
    localSessions: () => open.values(),
    localSession: (sessionId) => open.get(sessionId),
    registry,
    revocations,
    instanceId: config.instanceId,
    remote: cluster?.remote,
  });
  let http: HttpApi | undefined;
  if (config.http.port !== undefined) {
    const { host, port } = config.http;
    // Loaded only when wanted: with HTTP_PORT=off the process carries no Fastify or prom-client.
    const [{ startHttpApi }, { adminAuthenticator, metricsAuthenticator }, { createMetrics }] = await Promise.all([import('./http/api'), import('./http/auth'), import('./http/metrics')]);
    const authenticateAdmin = adminAuthenticator({ adminToken: config.http.adminToken, jwtVerifier, adminRoles: config.http.adminRoles, isOpen: config.http.isOpen, revocations });
    try {
      http = await startHttpApi(
        // Fastify reads X-Forwarded-For only: with FORWARDED_HEADER=forwarded a client could set it past the proxy.
        { host, port, ...(trustedProxies.isEmpty || config.forwardedHeader !== 'x-forwarded-for' ? {} : { isTrustedProxy: (address: string) => trustedProxies.has(address) }) },
        {
          registry,
          admin,
          publisher: router,
          presence,
          queues: router,
          // Without a credential, what reaches it is trusted: loopback Host names and pages only.
          ...(config.http.isOpen ? { foreignRequestRefusal: localOnlyGuard(config.allowedHosts, originList(config.allowedOrigins)) } : {}),
          authenticate: authenticateAdmin,
          ...(config.http.isMetricsGuarded ? { authenticateMetrics: metricsAuthenticator(config.http.metricsToken, config.http.isOpen ? undefined : authenticateAdmin) } : {}),
          instances: cluster ?? singleInstance(instanceReport),
          pages: { demo: config.http.isDemo ? { wsPort, wsPath: config.wsPath, isOpenLogin: config.authMode === 'none' } : undefined },
          readiness: () => {
            if (isStopping) return { isReady: false, reason: 'shutting down' };
            const health = cluster?.health();
            if (health?.isDegraded === true) return { isReady: false, reason: `Redis unreachable: ${health.reason ?? 'unknown'}` };
            return { isReady: true };
          },
          metrics: createMetrics({
            connections: () => open.values(),
            sessionCounters: counters,
            router,
            queues: router,
            cluster: () => cluster?.health(),
            ...(backend !== undefined ? { backend: () => backend.stats() } : {}),
            queueSeries: config.http.metricsQueueSeries,
          }),
          maxBodyBytes: config.limits.maxFrameBytes,
          logger,
        },
      );
    } catch (error) {
      for (const listener of listeners) listener.destroyConnections();
      await Promise.all(listeners.map((l) => l.close()));
      if (cluster !== undefined) await settlesWithin(cluster.stop(), config.shutdownTimeoutMs);
      const code = (error as NodeJS.ErrnoException).code;
      if (code === undefined) throw error;
      const variable = code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND' ? (config.http.host === config.host ? 'HOST' : 'HTTP_HOST') : 'HTTP_PORT';
      throw new ListenError(variable, `${host}:${port}`, error as NodeJS.ErrnoException);
    }
    if (config.http.isOpen) {
      logger.warn({ host, httpPort: http.port }, 'HTTP API without authentication (neither ADMIN_TOKEN nor JWT auth is configured): listening on loopback only');
    } else {
      logger.info({ host, httpPort: http.port, adminToken: config.http.adminToken !== undefined, adminJwtRoles: jwtVerifier ? config.http.adminRoles : undefined }, 'HTTP API listening');
    }
  }
  const httpApi = http;

  return {
    config,
    tcpPort,
    wsPort,
    stompTlsPort,
    wssPort,
    httpPort: httpApi?.port,
    events,
    router,
    registry,
    logger,
    pendingBudget,
    sessions: () => open.values(),
    presence,
    admin,
    clusterHealth: () => (cluster === undefined ? undefined : cluster.health()),
    reloadUsers: async () => {
      const users = await usersFile?.reload();
      warnIfUsersFileExposed();
      return users;
    },
    reloadTls: () => {
      if (config.tls === undefined) return undefined;
      const fresh = loadTlsCredentials(config.tls);
      for (const listener of tlsListeners) listener.setSecureContext?.(fresh.options);
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
      const closing = Promise.all(listeners.map((l) => l.close()));
      for (const session of [...open.values()]) session.terminate('shutdown', new StompError('SERVER_SHUTDOWN', 'the server is shutting down'));
      if (!(await settlesWithin(closing, config.shutdownTimeoutMs))) {
        logger.warn({ shutdownTimeoutMs: config.shutdownTimeoutMs, openConnections: admission.openCount }, 'shutdown timeout: destroying the connections still open');
        for (const listener of listeners) listener.destroyConnections();
        await closing;
      }
      // Their LEAVEs are decided in Redis before the connection goes.
      if (!(await settlesWithin(presence.settle(), config.shutdownTimeoutMs))) logger.warn('presence leaves took too long: gave up');
      await httpApi?.close().catch((err: unknown) => logger.warn({ err }, 'closing the HTTP API failed'));
      // The sessions' DISCONNECT events are given their chance (kept in Redis if they do not make it).
      await backend?.stop(config.redis === undefined ? config.shutdownTimeoutMs : Math.min(1000, config.shutdownTimeoutMs));
      subscriptionNotes.stop();
      // The sessions' unbinds are on their way; leaving Redis removes what is left of this instance.
      if (cluster !== undefined && !(await settlesWithin(cluster.stop(), config.shutdownTimeoutMs))) logger.warn('leaving Redis took too long: gave up');
      logger.info({ discardedQueueMessages: held.storedMessages + held.unacknowledgedMessages }, 'stompd stopped');
    },
  };
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
 * Refusals are logged at info, at most one line a second per kind (a flood of them must not
 * flood the log): each line counts the refusals since the previous one.
 */
function rateLimitedInfo(logger: Logger, message: string): (fields: Record<string, unknown>) => void {
  let lastLineAt = 0;
  let unlogged = 0;
  return (fields) => {
    const now = Date.now();
    if (now - lastLineAt < 1000) {
      unlogged++;
      return;
    }
    logger.info({ ...fields, refusedSinceLastLine: unlogged }, message);
    lastLineAt = now;
    unlogged = 0;
  };
}

function logTlsCredentials(logger: Logger, credentials: TlsCredentials, message: string): void {
  const fields = { subject: credentials.subject, validTo: credentials.validTo.toISOString(), clientCertificates: credentials.options.requestCert === true };
  if (credentials.isExpired) logger.warn(fields, `${message}: the certificate has EXPIRED, clients will refuse it`);
  else logger.info(fields, message);
}

const REJECTION_MESSAGES: Record<RejectReason['code'], string> = {
  TLS_ON_PLAIN_PORT: 'connection closed: a TLS handshake arrived on a plain port',
  UNTRUSTED_PROXY_HEADER: 'connection closed: a PROXY protocol header from a peer not in TRUSTED_PROXIES',
  BAD_PROXY_HEADER: 'connection closed: no valid PROXY protocol header from a trusted proxy',
  TLS_HANDSHAKE_FAILED: 'connection closed: TLS handshake failed',
};

/** Connections closed before they became sessions (TLS on a plain port, PROXY headers): one line each kind, at most a second. */
function rejectionLog(logger: Logger): (remoteAddress: string, reason: RejectReason) => void {
  const logs = new Map<string, (fields: Record<string, unknown>) => void>();
  return (remoteAddress, reason) => {
    let log = logs.get(reason.code);
    if (log === undefined) {
      log = rateLimitedInfo(logger, REJECTION_MESSAGES[reason.code]);
      logs.set(reason.code, log);
    }
    log({ code: reason.code, remoteAddress, detail: reason.detail });
  };
}

function refusalLog(logger: Logger): (transport: TransportKind, remoteAddress: string, refusal: Refusal) => void {
  const log = rateLimitedInfo(logger, 'connection refused: too many connections');
  return (transport, remoteAddress, refusal) => log({ transport, remoteAddress, limit: refusal.limit, max: refusal.max });
}

const HANDSHAKE_REFUSAL_LINES: Record<HandshakeRefusalKind, string> = {
  origin: 'connection refused: Origin not allowed',
  host: 'connection refused: Host not allowed',
  cookie: 'connection refused: cookie credential from a foreign Origin',
};

/** The handshake check, with its refusals logged (rate-limited per kind): HTTP 403 says nothing to the operator. */
function loggedHandshakeCheck(
  verify: (request: IncomingMessage) => HandshakeRefusal | undefined,
  logger: Logger,
  clientAddress: (request: IncomingMessage) => string,
): (request: IncomingMessage) => string | undefined {
  const logs = new Map<HandshakeRefusalKind, (fields: Record<string, unknown>) => void>();
  return (request) => {
    const refusal = verify(request);
    if (refusal === undefined) return undefined;
    let log = logs.get(refusal.kind);
    if (log === undefined) logs.set(refusal.kind, (log = rateLimitedInfo(logger, HANDSHAKE_REFUSAL_LINES[refusal.kind])));
    log({
      transport: 'ws',
      remoteAddress: clientAddress(request),
      origin: String(request.headers.origin ?? '').slice(0, 200),
      host: String(request.headers.host ?? '').slice(0, 200),
    });
    return refusal.message;
  };
}
