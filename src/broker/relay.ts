// The Relay: how the router reaches subscribers on other instances. The router tells it
// which route keys have local subscribers here (interest), and hands it every topic and
// user-destination message published here; the relay hands messages from other instances
// back through Router.deliverRemote. Implementations: RedisRelay (src/cluster/redis-relay.ts)
// between processes, MemoryRelayHub (memory-relay.ts) between routers of one process; both
// pass test/contracts/relay.test.ts. A single embedded broker has none: nothing else to reach.

import type { Message } from './message';

export interface Relay {
  /** A message published on this instance, for subscribers elsewhere. Must not block or throw. */
  publish(message: Message): void;
  /**
   * `routeKey` gained its first local subscriber (true) or lost its last (false). On a gain,
   * may return a promise that resolves once messages published elsewhere reach this instance
   * (the subscription to the shared channel is in place): the SUBSCRIBE's RECEIPT waits for it.
   */
  setInterest(routeKey: string, isInterested: boolean): Promise<void> | void;
  /**
   * Messages from other instances wait here for these destinations (and this many subscribers
   * each): tell the other instances, whose flow control then holds their publishers. An empty
   * map: nothing waits any more. Must not block or throw.
   */
  reportCongestion?(waiting: ReadonlyMap<string, number>): void;
  /**
   * While the relay cannot take more (publishes to other instances wait for their answer): a
   * promise that resolves once it can; else undefined. A publisher waits for it after a publish.
   */
  backpressure?(): Promise<void> | undefined;
}
