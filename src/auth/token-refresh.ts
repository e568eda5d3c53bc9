// In-band token refresh: a SEND to TOKEN_REFRESH_DESTINATION (default /stompd/token) with a
// `token` header swaps the session's JWT without reconnecting, so @stomp/stompjs clients keep
// their subscriptions (publish + watchForReceipt). The new token must verify and name the
// same user; the roles it carries replace the old ones and every subscription is checked
// again against the chain (access rules, the backend's SUBSCRIBE hook): one no longer
// allowed ends the session with FORBIDDEN. Anything else wrong ends it too (ERROR + close):
// a client sending a bad token is not left running on the old one unknowingly.

import { headerValue } from '../codec';
import type { Frame } from '../codec';
import type { DestinationHandler } from '../session/destination-handler';
import { StompError } from '../session/errors';
import { runChain } from '../session/interceptor';
import type { Session } from '../session/session';
import type { JwtVerifier } from './jwt';

export function tokenRefresh(destination: string, verifier: JwtVerifier): DestinationHandler {
  return {
    name: 'token-refresh',
    isControl: true,
    handles: (d) => d === destination,
    async send(session: Session, frame: Frame): Promise<void> {
      const token = headerValue(frame.headers, 'token');
      if (token === undefined || token === '') throw new StompError('MISSING_HEADER', `SEND to ${destination} needs a token header`);
      const principal = await verifier.verify(token);
      if (!session.isOpen) return;
      if (principal.userId !== session.userId) throw new StompError('UNAUTHENTICATED', 'the new token is for another user');
      session.renewLogin(principal);
      for (const subscription of [...session.subscriptions.values()]) {
        const check: Frame = {
          command: 'SUBSCRIBE',
          headers: [
            ['destination', subscription.destination],
            ['id', subscription.id],
          ],
          body: Buffer.alloc(0),
        };
        try {
          await runChain(session.deps.interceptors, 'onSubscribe', { session, frame: check, destination: subscription.destination });
        } catch (error) {
          if (!(error instanceof StompError) || error.code !== 'FORBIDDEN') throw error;
          throw new StompError('FORBIDDEN', `after the token refresh, the subscription to ${subscription.destination} is no longer allowed`);
        }
        if (!session.isOpen) return;
      }
      session.log.info({ expiresAtMs: principal.expiresAtMs, roles: principal.roles }, 'token refreshed in-band');
    },
  };
}
