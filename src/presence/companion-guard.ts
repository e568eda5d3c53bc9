// A link that keeps presence companion destinations (`<room><PRESENCE_COMPANION_SUFFIX>`) the
// broker's own: a client SEND there could put a forged JOIN or LEAVE body in front of
// clients that read that destination as nothing but presence events. Refused FORBIDDEN.

import { StompError } from '../session/errors';
import type { DestinationContext, Interceptor } from '../session/interceptor';
import type { RoomMatcher } from './presence';

export function companionGuard(matcher: RoomMatcher): Interceptor {
  return {
    name: 'presence-companion-guard',
    onSend(ctx: DestinationContext): void {
      if (matcher.isCompanion(ctx.destination)) {
        throw new StompError('FORBIDDEN', `${ctx.destination} carries the broker's presence events: only the broker sends there`);
      }
    },
  };
}
