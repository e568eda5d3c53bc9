// The Relay the router is given with Redis: RedisRelay, plus presence's bookkeeping of the
// rooms this instance hears. A room (or companion) that gains local subscribers is tracked
// by the sequencer from the room's current number (so a hole is noticed even before the
// first event arrives) and watched by the views; one that loses them is forgotten. Flow
// control's congestion reports and backpressure pass through to RedisRelay unchanged.

import type { Relay } from '../broker/relay';
import type { RoomMatcher } from '../presence/presence';
import type { PresenceSequencer } from './presence-sequencer';
import type { PresenceViews } from './presence-views';

export interface PresenceRelayDeps {
  relay: Relay;
  rooms: RoomMatcher;
  /** The room's last decision number (undefined: none). */
  currentSeq: (routeKey: string) => Promise<number | undefined>;
  sequencer: PresenceSequencer;
  views: PresenceViews;
}

export function presenceRelay({ relay, rooms, currentSeq, sequencer, views }: PresenceRelayDeps): Relay {
  return {
    publish: (message) => relay.publish(message),
    setInterest: (routeKey, isInterested) => {
      if (!isInterested) sequencer.forget(routeKey);
      else if (rooms.isRoom(routeKey) || rooms.roomOfCompanion(routeKey) !== undefined) {
        currentSeq(routeKey).then(
          (seq) => sequencer.track(routeKey, seq),
          () => undefined,
        );
      }
      views.setInterest(routeKey, isInterested);
      return relay.setInterest(routeKey, isInterested);
    },
    reportCongestion: (waiting) => relay.reportCongestion?.(waiting),
    backpressure: () => relay.backpressure?.(),
  };
}
