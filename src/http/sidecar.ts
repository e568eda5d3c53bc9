// The HTTP sidecar as the broker starts it: its credentials (ADMIN_TOKEN, admin JWTs,
// METRICS_TOKEN, or loopback only when there are none), its metrics, and the API over the
// broker's parts. Loaded only when wanted (server.ts imports it with HTTP_PORT set), and so
// are api.ts, auth.ts and metrics.ts, on demand: HTTP_PORT=off carries no Fastify or prom-client.

import type { Logger } from 'pino';
import type { RevocationStore } from '../auth/revocation';
import { localOnlyGuard, originList } from '../auth/host';
import type { JwtVerifier } from '../auth/jwt';
import type { Config } from '../config';
import type { InstanceDirectory } from '../registry/instances';
import type { SessionRegistry } from '../registry/registry';
import type { SessionAdmin } from '../session/admin';
import type { TrustedProxies } from '../transport/trusted-proxies';
import { listenFailure } from '../transport/listeners';
import type { HttpApi, HttpApiDeps } from './api';
import type { MetricsSources } from './metrics';

export type SidecarConfig = Pick<Config, 'http' | 'host' | 'allowedHosts' | 'allowedOrigins' | 'forwardedHeader' | 'authMode' | 'wsPath' | 'limits'>;

export interface SidecarSources {
  registry: SessionRegistry;
  admin: SessionAdmin;
  revocations: RevocationStore;
  jwtVerifier: JwtVerifier | undefined;
  trustedProxies: TrustedProxies;
  publisher: HttpApiDeps['publisher'];
  /** The HTTP API's publishes as one publisher under flow control (absent: flow control is off). */
  publisherFlow?: HttpApiDeps['publisherFlow'];
  presence: HttpApiDeps['presence'];
  queues: HttpApiDeps['queues'];
  instances: InstanceDirectory;
  readiness: HttpApiDeps['readiness'];
  metrics: MetricsSources;
  /** Where the demo page's client connects (DEMO=1). */
  wsPort: number | undefined;
  logger: Logger;
}

/** Start the sidecar; undefined with HTTP_PORT=off. A port it cannot open is a ListenError (HTTP_HOST or HTTP_PORT). */
export async function startSidecar(config: Readonly<SidecarConfig>, sources: SidecarSources): Promise<HttpApi | undefined> {
  const { http } = config;
  if (http.port === undefined) return undefined;
  const { host, port } = http;
  const { logger, trustedProxies } = sources;
  const [{ startHttpApi }, { adminAuthenticator, metricsAuthenticator }, { createMetrics }] = await Promise.all([import('./api'), import('./auth'), import('./metrics')]);
  const authenticate = adminAuthenticator({ adminToken: http.adminToken, jwtVerifier: sources.jwtVerifier, adminRoles: http.adminRoles, isOpen: http.isOpen, revocations: sources.revocations });
  let api: HttpApi;
  try {
    api = await startHttpApi(
      // Fastify reads X-Forwarded-For only: with FORWARDED_HEADER=forwarded a client could set it past the proxy.
      { host, port, ...(trustedProxies.isEmpty || config.forwardedHeader !== 'x-forwarded-for' ? {} : { isTrustedProxy: (address: string) => trustedProxies.has(address) }) },
      {
        registry: sources.registry,
        admin: sources.admin,
        publisher: sources.publisher,
        ...(sources.publisherFlow !== undefined ? { publisherFlow: sources.publisherFlow } : {}),
        presence: sources.presence,
        queues: sources.queues,
        // Without a credential, what reaches it is trusted: loopback Host names and pages only.
        ...(http.isOpen ? { foreignRequestRefusal: localOnlyGuard(config.allowedHosts, originList(config.allowedOrigins)) } : {}),
        authenticate,
        ...(http.isMetricsGuarded ? { authenticateMetrics: metricsAuthenticator(http.metricsToken, http.isOpen ? undefined : authenticate) } : {}),
        instances: sources.instances,
        pages: { demo: http.isDemo ? { wsPort: sources.wsPort, wsPath: config.wsPath, isOpenLogin: config.authMode === 'none' } : undefined },
        readiness: sources.readiness,
        metrics: createMetrics(sources.metrics),
        maxBodyBytes: config.limits.maxFrameBytes,
        logger,
      },
    );
  } catch (error) {
    throw listenFailure(error, host, port, 'HTTP_PORT', http.host === config.host ? 'HOST' : 'HTTP_HOST');
  }
  if (http.isOpen) {
    logger.warn({ host, httpPort: api.port }, 'HTTP API without authentication (neither ADMIN_TOKEN nor JWT auth is configured): listening on loopback only');
  } else {
    logger.info({ host, httpPort: api.port, adminToken: http.adminToken !== undefined, adminJwtRoles: sources.jwtVerifier ? http.adminRoles : undefined }, 'HTTP API listening');
  }
  return api;
}
