// How CONNECTs are authenticated, chosen once from the configuration: a JWT (AUTH=jwt), the
// users file (AUTH=users), the application's CONNECT hook (BACKEND_HOOKS connect with
// AUTH=none), or nothing (the login is taken as the user id). Built before any listener
// opens: a bad key or users file stops the start (ConfigError). The operator hears what was
// chosen, and is warned where the choice is open to abuse.

import type { Logger } from 'pino';
import type { Config } from '../config';
import type { Interceptor } from '../session/interceptor';
import { loginAsUserId } from './embedded';
import { isLoopbackHostname } from './host';
import { createJwtVerifier, jwtAuthenticator } from './jwt';
import type { JwtVerifier } from './jwt';
import { UsersFile, passwordAuthenticator } from './users';

export interface Authentication {
  /** The first link of the CONNECT chain; undefined when the CONNECT hook authenticates (a backend link). */
  readonly link: Interceptor | undefined;
  /** One verifier for STOMP logins and admin JWTs on the HTTP API (AUTH=jwt). */
  readonly jwtVerifier: JwtVerifier | undefined;
  /** Nothing checks who connects: the CONNECT login is the user id. */
  readonly isUnauthenticated: boolean;
  /**
   * Re-read USERS_FILE (AUTH=users): later CONNECTs are checked against the new users. A bad
   * file keeps the current users and rejects (ConfigError). The number of users; undefined in
   * the other modes.
   */
  reloadUsers(): Promise<number | undefined>;
}

export type AuthenticationConfig = Pick<Config, 'authMode' | 'usersFile' | 'jwt' | 'backend' | 'wsPort' | 'host' | 'allowedHosts' | 'redis'>;

export function chooseAuthentication(config: Readonly<AuthenticationConfig>, logger: Logger): Authentication {
  const usersFile = config.authMode === 'users' ? new UsersFile(config.usersFile!) : undefined;
  const jwtVerifier = config.authMode === 'jwt' ? createJwtVerifier(config.jwt) : undefined;
  // A CONNECT hook authenticates by itself: the bare login header is then not a user id.
  const isHookAuthenticated = config.backend?.hooks.has('connect') === true && config.authMode === 'none';
  const link = jwtVerifier !== undefined ? jwtAuthenticator(jwtVerifier) : usersFile !== undefined ? passwordAuthenticator(usersFile) : isHookAuthenticated ? undefined : loginAsUserId();
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
  const isUnauthenticated = config.authMode === 'none' && !isHookAuthenticated;
  if (isUnauthenticated) {
    logger.warn(
      config.redis === undefined
        ? 'embedded mode: everything in memory, no Redis, no authentication (the CONNECT login is taken as the user id)'
        : 'no authentication: the CONNECT login is taken as the user id (set JWT_SECRET, JWT_PUBLIC_KEY, JWT_JWKS_URL or USERS_FILE)',
    );
  }
  return {
    link,
    jwtVerifier,
    isUnauthenticated,
    reloadUsers: async () => {
      const users = await usersFile?.reload();
      warnIfUsersFileExposed();
      return users;
    },
  };
}
