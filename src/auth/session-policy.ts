// Session binding and the single-session policy, as one link at the end of the CONNECT chain.
//
// The check and the binding are one atomic registry call (bind), so two simultaneous
// CONNECTs of one user under `reject` cannot both win. A session that goes away for any
// reason — including a heart-beat timeout of a client that vanished — is unbound in
// onClose, so a dead session never locks its user out for longer than the heart-beat bound.

import type { SingleSessionMode } from '../config';
import { RegistryUnavailableError } from '../registry/registry';
import type { BindPolicy, BindResult, SessionRegistry } from '../registry/registry';
import { StompError } from '../session/errors';
import type { StompErrorCode } from '../session/errors';
import type { ConnectContext, Interceptor, SessionView } from '../session/interceptor';
import type { Logger } from 'pino';

/** Closes a session wherever it lives: on this instance, or on another through the cluster layer. */
export interface SessionKicker {
  kick(sessionId: string, code: StompErrorCode, message: string): void;
}

export interface SessionPolicyOptions {
  mode: SingleSessionMode;
  /** 0: no limit (mode off), or 1 (modes reject and replace). */
  maxSessionsPerUser: number;
}

export function bindPolicyFor(options: SessionPolicyOptions): BindPolicy {
  const max = options.maxSessionsPerUser > 0 ? options.maxSessionsPerUser : options.mode === 'off' ? Infinity : 1;
  return { maxPerUser: max, mode: options.mode === 'replace' ? 'replace' : 'reject' };
}

export function sessionPolicy(registry: SessionRegistry, options: SessionPolicyOptions, kicker: SessionKicker, logger: Logger, instanceId: string): Interceptor {
  const policy = bindPolicyFor(options);
  const unlimited: BindPolicy = { maxPerUser: Infinity, mode: 'reject' };
  const bound = new Set<string>();

  const unbind = (sessionId: string): void => {
    registry.unbind(sessionId).catch((err: unknown) => logger.error({ err, sessionId }, 'registry unbind failed'));
  };

  return {
    name: 'session-policy',
    async onConnect(ctx: ConnectContext): Promise<void> {
      const principal = ctx.principal;
      if (principal === undefined) throw new StompError('UNAUTHENTICATED', 'no user to bind the session to');
      const session = ctx.session;
      const now = Date.now();
      let result: BindResult;
      try {
        result = await registry.bind(
          {
            sessionId: session.id,
            userId: principal.userId,
            roles: principal.roles,
            instanceId,
            transport: session.transport,
            remoteAddress: session.peer.remoteAddress,
            connectedAt: now,
            lastSeenAt: now,
          },
          principal.isAnonymous ? unlimited : policy,
        );
      } catch (error) {
        if (!(error instanceof RegistryUnavailableError)) throw error;
        logger.warn({ err: error, sessionId: session.id }, 'CONNECT refused: the session registry is unreachable');
        throw new StompError('UNAVAILABLE', 'the session registry is unreachable right now; try again shortly');
      }
      if (!result.isBound) {
        if (options.mode === 'off') {
          throw new StompError('TOO_MANY_SESSIONS', `user ${principal.userId} already has ${result.holders.length} sessions, the limit`);
        }
        throw new StompError('DUPLICATE_SESSION', `user ${principal.userId} is already connected`);
      }
      // The evicted are out of the registry whatever happens next: they must go too.
      for (const old of result.evicted) {
        logger.info({ sessionId: old.sessionId, userId: old.userId, by: session.id }, 'session replaced');
        kicker.kick(old.sessionId, 'SESSION_REPLACED', 'replaced by a newer session of the same user');
      }
      if (!session.isOpen) {
        unbind(session.id); // the session died while the registry answered
        return;
      }
      bound.add(session.id);
    },
    onClose(session: SessionView): void {
      if (bound.delete(session.id)) unbind(session.id);
    },
  };
}
