// One in-memory queue: each message goes to one consumer (the consumer ring decides which).
//
// Invariants:
// - A message is either stored here, or pending on exactly one subscription, never both.
// - heldBytes counts every message the queue is answerable for: stored, and delivered but
//   not yet acknowledged (a NACK or a lost consumer brings those back). An auto-ack delivery,
//   an ACK, an expiry or a drop ends it. Every change is reported through QueueHooks.
// - Stored messages are bounded by maxMessages and heldBytes by maxBytes: past either the
//   oldest stored are dropped and counted (RabbitMQ's drop-head overflow).
// - Messages a consumer gave back (NACK, unsubscribe, disconnect) go to the front, in their
//   original order, and are offered to another consumer first.

import { Backlog } from './backlog';
import { ConsumerRing, messagesOf } from './consumer-ring';
import type { Message } from './message';
import type { Delivery, Subscription } from './subscription';

export interface QueueLimits {
  maxMessages: number;
  maxBytes: number;
}

/** How a queue tells its owner about bytes it holds and messages it drops. */
export interface QueueHooks {
  heldBytesChanged(deltaBytes: number): void;
  dropped(queue: Queue, messageCount: number, byteCount: number): void;
}

export class Queue {
  readonly destination: string;
  /** Messages thrown away because the queue was full. */
  droppedCount = 0;
  droppedBytes = 0;
  /** Messages thrown away unseen because their `expires` time had passed. */
  expiredCount = 0;
  /** Stored and unacknowledged messages, as Message.byteSize counts them. */
  heldBytes = 0;
  private readonly limits: QueueLimits;
  private readonly hooks: QueueHooks;
  private readonly stored = new Backlog<Message>();
  private readonly consumers: ConsumerRing<Message>;

  constructor(destination: string, limits: QueueLimits, hooks: QueueHooks) {
    this.destination = destination;
    this.limits = limits;
    this.hooks = hooks;
    this.consumers = new ConsumerRing<Message>({
      done: (message) => this.hold(-message.byteSize),
      expired: (message) => {
        this.expiredCount++;
        this.hold(-message.byteSize);
      },
    });
  }

  get depth(): number {
    return this.stored.length;
  }

  get consumerCount(): number {
    return this.consumers.size;
  }

  /** Messages handed to a consumer (redeliveries too). */
  get deliveredCount(): number {
    return this.consumers.deliveredCount;
  }

  /** Delivered to a consumer and not acknowledged yet. */
  get unackedCount(): number {
    return this.consumers.unackedCount;
  }

  /** When the oldest message it holds (stored or unacknowledged) was published; undefined if none. */
  get oldestAtMs(): number | undefined {
    const stored = this.stored.peek()?.createdAtMs;
    const unacked = this.consumers.oldestUnackedAtMs;
    if (stored === undefined || unacked === undefined) return stored ?? unacked;
    return Math.min(stored, unacked);
  }

  /** Nothing stored and nobody listening: its owner may forget this queue. */
  get isIdle(): boolean {
    return this.stored.length === 0 && this.consumers.size === 0;
  }

  publish(message: Message): void {
    this.hold(message.byteSize);
    if (this.stored.length === 0 && this.consumers.offer(message)) return;
    this.stored.push(message);
    this.trim();
  }

  addConsumer(subscription: Subscription): void {
    this.consumers.add(subscription);
    this.drain();
  }

  /** Drop the consumer and give its unacknowledged messages to the others. */
  removeConsumer(subscription: Subscription): void {
    if (!this.consumers.remove(subscription)) return;
    this.giveBack(messagesOf(subscription.takeAllPending()), undefined);
  }

  /** Acknowledged: the queue is no longer answerable for them, and the consumer has room. */
  acknowledged(deliveries: readonly Delivery[]): void {
    let bytes = 0;
    for (const delivery of deliveries) bytes += delivery.message?.byteSize ?? 0;
    this.hold(-bytes);
    this.drain();
  }

  /** NACKed by `from`: offered to another consumer first, `from` only if nobody else can take them. */
  nacked(deliveries: readonly Delivery[], from: Subscription): void {
    this.giveBack(messagesOf(deliveries), from);
    this.drain();
  }

  /** Hand stored messages to consumers while any can take one. */
  drain(): void {
    this.consumers.drain(this.stored);
  }

  private giveBack(messages: readonly Message[], from: Subscription | undefined): void {
    if (messages.length === 0) return;
    const left = this.consumers.giveBack(messages, from, true);
    if (left.length === 0) return;
    this.stored.pushFront(left);
    this.trim();
  }

  /** Past a limit: drop the oldest stored. */
  private trim(): void {
    const { maxMessages, maxBytes } = this.limits;
    let count = 0;
    let bytes = 0;
    while (this.stored.length > maxMessages || (this.stored.length > 0 && this.heldBytes - bytes > maxBytes)) {
      bytes += this.stored.shift()!.byteSize;
      count++;
    }
    if (count === 0) return;
    this.droppedCount += count;
    this.droppedBytes += bytes;
    this.hold(-bytes);
    this.hooks.dropped(this, count, bytes);
  }

  private hold(deltaBytes: number): void {
    if (deltaBytes === 0) return;
    this.heldBytes += deltaBytes;
    this.hooks.heldBytesChanged(deltaBytes);
  }
}
