// A link that refuses user ids the broker could not address: with a "/" inside (or named
// like the queue/topic prefix), /user/<id>/... would reach the wrong user or nobody. Runs
// after authentication and before the session is bound to its user.

import type { Destinations } from '../broker/destinations';
import { StompError } from '../session/errors';
import type { ConnectContext, Interceptor } from '../session/interceptor';

export function addressableUserId(destinations: Destinations): Interceptor {
  return {
    name: 'addressable-user-id',
    onConnect(ctx: ConnectContext): void {
      const userId = ctx.principal?.userId;
      if (userId !== undefined && !destinations.isAddressableUserId(userId)) {
        throw new StompError('UNAUTHENTICATED', `user id ${JSON.stringify(userId.slice(0, 64))} cannot be used: it must not contain "/" nor be a destination prefix name`);
      }
    },
  };
}
