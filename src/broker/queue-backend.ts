// The seam between the router and where queues live. The router holds exactly one backend
// and never asks which: MemoryQueues (broker/memory-queues.ts) by default, the cluster
// node's RedisQueues (cluster/redis-queues.ts) when Redis is configured, where a queue is one
// queue for all instances. test/contracts/queue-backend.contract.ts runs the same behaviours
// against both.
//
// Answers are values where the backend knows at once (memory: synchronous, as fast as a
// plain call) and promises where it must ask Redis: admitting and storing a publish resolve
// once Redis answered, so a RECEIPT is sent after the message is stored. Everything else
// (subscribe, ACK, NACK, resume) returns nothing and must not throw: a backend does its
// remote work in the background and retries what an outage interrupted.

import type { Message } from './message';
import type { Delivery, Subscription } from './subscription';

/** Why a queue publish is refused: a stable code for the ERROR, and a sentence. */
export interface QueueRefusal {
  code: 'QUEUE_FULL' | 'QUEUE_LIMIT' | 'UNAVAILABLE';
  message: string;
}

/** A refusal or none: at once (memory) or once Redis answered. */
export type Admission = QueueRefusal | undefined | Promise<QueueRefusal | undefined>;

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

/** This process's queue counters, read synchronously (router stats, metrics, the instance report). */
export interface QueueTotals {
  /** Queues this process holds state for (memory: every queue; Redis: those with local consumers). */
  queues: number;
  /** Stored in this process's memory and not handed out yet. */
  queuedMessages: number;
  /** Stored and unacknowledged messages held in memory, as Message.byteSize counts them. */
  queuedBytes: number;
  /** Dropped by full queues (MAX_QUEUE_MESSAGES, MAX_QUEUE_BYTES) in memory: messages and their bytes. */
  droppedMessages: number;
  droppedBytes: number;
  /** Publishes refused: all queues full (QUEUE_FULL), too many queues (QUEUE_LIMIT). */
  refusedQueueFull: number;
  refusedQueueLimit: number;
  /** Messages handed to this process's consumers (redeliveries too). */
  delivered: number;
}

export interface QueueBackend {
  /** Whether publishing these queue messages may go ahead, all of them (a COMMIT is all or nothing). */
  admit(messages: readonly Message[]): Admission;
  /** Store an admitted message (or hand it to a consumer); memory answers undefined at once. */
  publish(message: Message): undefined | Promise<QueueRefusal | undefined>;
  /** Whether a SUBSCRIBE may create the queue (MAX_QUEUES). */
  admitSubscription(destination: string): Admission;
  subscribe(subscription: Subscription): void;
  /** The subscription is gone: its unacknowledged messages go back for redelivery. */
  unsubscribe(subscription: Subscription): void;
  /** ACKed: removed from the queue for good; the subscription has room again. */
  acknowledged(subscription: Subscription, deliveries: readonly Delivery[]): void;
  /** NACKed: redelivered (marked redelivered), preferably to another consumer. */
  nacked(subscription: Subscription, deliveries: readonly Delivery[]): void;
  /** The subscriber can take messages again (its outbound buffer drained). */
  resume(subscription: Subscription): void;
  queueStats(): Promise<QueueStat[]>;
  totals(): QueueTotals;
  /** Messages of `destination` waiting in this process's memory for a consumer. */
  depth(destination: string): number;
  /** What stopping now would lose: messages held only by this process (memory), none with Redis. */
  heldOnlyHere(): { storedMessages: number; unacknowledgedMessages: number };
}
