// The embedded-mode authenticator: no credentials checked. The CONNECT `login` header is
// taken as the user id; without one the session is anonymous, with a user id of its own.
// Fit for trying stompd on one machine, never for a network-facing broker.

import { headerValue } from '../codec';
import type { ConnectContext, Interceptor } from '../session/interceptor';

export function loginAsUserId(): Interceptor {
  return {
    name: 'login-as-user-id',
    onConnect(ctx: ConnectContext): void {
      const login = headerValue(ctx.frame.headers, 'login');
      ctx.principal = login !== undefined && login !== '' ? { userId: login, roles: [], isAnonymous: false } : { userId: `anonymous-${ctx.session.id}`, roles: [], isAnonymous: true };
    },
  };
}
