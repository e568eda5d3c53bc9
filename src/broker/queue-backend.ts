// The seam between the router and where queues live. Embedded mode has none: the router
// keeps its queues in memory (queue.ts), synchronously, as fast as ever. With Redis the
// cluster node attaches one (src/cluster/redis-queues.ts) and the router hands it every
// queue operation: a queue is then one queue for all instances.
//
// A backend is asynchronous where Redis is: admitting a publish and storing it resolve only
// once Redis answered, so a RECEIPT is sent after the message is stored. Everything else
// (subscribe, settle, give back) must not block or throw: the backend does its Redis work in
// the background and retries what an outage interrupted.

import type { Message } from './message';
import type { Subscription } from './subscription';

/** Why a queue publish is refused: a stable code for the ERROR, and a sentence. */
export interface QueueRefusal {
  code: 'QUEUE_FULL' | 'QUEUE_LIMIT' | 'UNAVAILABLE';
  message: string;
}

/** One queue as GET /api/queues and /metrics show it. */
export interface QueueStat {
  /** The destination, `/queue/...`. */
  name: string;
  /** Messages stored and not handed to any consumer yet. */
  depth: number;
  /** Delivered and not acknowledged yet. */
  unacked: number;
  /** Subscriptions consuming it (on every instance). */
  consumers: number;
  /** Age of the oldest message it holds (stored or unacknowledged); 0 when empty. */
  oldestAgeMs: number;
  /** Dropped because the queue was full (MAX_QUEUE_MESSAGES), and dropped because they expired. */
  dropped: number;
  expired: number;
}

export interface QueueBackend {
  /** Whether publishes to these queues may go ahead (MAX_QUEUES); registers the new ones. */
  admit(destinations: readonly string[]): Promise<QueueRefusal | undefined>;
  /** Store `message`; resolves once it is stored (undefined) or refused. */
  publish(message: Message): Promise<QueueRefusal | undefined>;
  /** Whether a SUBSCRIBE may create the queue (MAX_QUEUES). */
  admitSubscription(destination: string): Promise<QueueRefusal | undefined>;
  subscribe(subscription: Subscription): void;
  /** The subscription is gone: its unacknowledged messages go back for redelivery. */
  unsubscribe(subscription: Subscription): void;
  /** Acknowledged: removed from the queue for good. */
  acknowledged(subscription: Subscription, messages: readonly Message[]): void;
  /** NACKed: redelivered (marked redelivered), preferably to another consumer. */
  nacked(subscription: Subscription, messages: readonly Message[]): void;
  /** The subscriber can take messages again (its outbound buffer drained). */
  resume(subscription: Subscription): void;
  queueStats(): Promise<QueueStat[]>;
}
