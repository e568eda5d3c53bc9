// A queue: each message goes to one consumer, round robin among those that can take it.
//
// Invariants:
// - A message is either stored here, or pending on exactly one subscription, never both.
// - heldBytes counts every message the queue is answerable for: stored, and delivered but
//   not yet acknowledged (a NACK or a lost consumer brings those back). An auto-ack delivery,
//   an ACK or a drop ends it. Every change is reported through QueueHooks.
// - Stored messages are bounded by maxMessages and heldBytes by maxBytes: past either the
//   oldest stored are dropped and counted (RabbitMQ's drop-head overflow).
// - Messages a consumer gave back (NACK, unsubscribe, disconnect) go to the front, in their
//   original order, and are offered to another consumer first.

import type { Message } from './message';
import type { Delivery, Subscription } from './subscription';

/** The messages of queue deliveries (a queue subscription keeps them all). */
export function messagesOf(deliveries: readonly Delivery[]): Message[] {
  const messages: Message[] = [];
  for (const delivery of deliveries) if (delivery.message !== undefined) messages.push(delivery.message);
  return messages;
}

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
  /** Messages handed to a consumer (redeliveries too). */
  deliveredCount = 0;
  private stored: Message[] = [];
  private consumers: Subscription[] = [];
  private nextConsumer = 0;

  constructor(destination: string, limits: QueueLimits, hooks: QueueHooks) {
    this.destination = destination;
    this.limits = limits;
    this.hooks = hooks;
  }

  get depth(): number {
    return this.stored.length;
  }

  get consumerCount(): number {
    return this.consumers.length;
  }

  /** Delivered to a consumer and not acknowledged yet. */
  get unackedCount(): number {
    let count = 0;
    for (const consumer of this.consumers) count += consumer.pending.size;
    return count;
  }

  /** When the oldest message it holds (stored or unacknowledged) was published; undefined if none. */
  get oldestAtMs(): number | undefined {
    let oldest = this.stored[0]?.createdAtMs;
    for (const consumer of this.consumers) {
      const first = consumer.pending.values().next().value?.message?.createdAtMs;
      if (first !== undefined && (oldest === undefined || first < oldest)) oldest = first;
    }
    return oldest;
  }

  /** Nothing stored and nobody listening: the router may forget this queue. */
  get isIdle(): boolean {
    return this.stored.length === 0 && this.consumers.length === 0;
  }

  publish(message: Message): void {
    this.hold(message.byteSize);
    if (this.stored.length === 0 && this.dispatch(message, undefined)) return;
    this.store(message);
  }

  /** Acknowledged: the queue is no longer answerable for them. */
  settled(messages: readonly Message[]): void {
    let bytes = 0;
    for (const message of messages) bytes += message.byteSize;
    this.hold(-bytes);
  }

  addConsumer(subscription: Subscription): void {
    subscription.keepsMessages = true;
    this.consumers.push(subscription);
    this.drain();
  }

  /** Drop the consumer and give its unacknowledged messages to the others. */
  removeConsumer(subscription: Subscription): void {
    const index = this.consumers.indexOf(subscription);
    if (index === -1) return;
    this.consumers.splice(index, 1);
    if (this.nextConsumer > index) this.nextConsumer--;
    const unacked = messagesOf(subscription.takeAllPending());
    this.giveBack(unacked, undefined);
  }

  /** Messages NACKed by `from`: offered to another consumer first, `from` only if alone. */
  giveBack(messages: readonly Message[], from: Subscription | undefined): void {
    if (messages.length === 0) return;
    for (const message of messages) message.isRedelivered = true;
    const stillHere: Message[] = [];
    for (const message of messages) {
      const isTaken = this.dispatch(message, from) || (from !== undefined && this.consumers.includes(from) && this.dispatchTo(from, message));
      if (!isTaken) stillHere.push(message);
    }
    if (stillHere.length > 0) {
      this.stored = [...stillHere, ...this.stored];
      this.trim();
    }
  }

  /** Hand stored messages to consumers while any can take one. */
  drain(): void {
    let taken = 0;
    while (taken < this.stored.length && this.dispatch(this.stored[taken]!, undefined)) taken++;
    if (taken > 0) this.stored = this.stored.slice(taken);
  }

  private store(message: Message): void {
    this.stored.push(message);
    this.trim();
  }

  private trim(): void {
    const { maxMessages, maxBytes } = this.limits;
    let count = Math.max(0, this.stored.length - maxMessages);
    let bytes = 0;
    for (let i = 0; i < count; i++) bytes += this.stored[i]!.byteSize;
    while (count < this.stored.length && this.heldBytes - bytes > maxBytes) bytes += this.stored[count++]!.byteSize;
    if (count === 0) return;
    this.stored.splice(0, count);
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

  /** Round robin over writable consumers other than `except`. */
  private dispatch(message: Message, except: Subscription | undefined): boolean {
    const consumers = this.consumers;
    for (let tries = 0; tries < consumers.length; tries++) {
      if (this.nextConsumer >= consumers.length) this.nextConsumer = 0;
      const consumer = consumers[this.nextConsumer++]!;
      if (consumer !== except && this.dispatchTo(consumer, message)) return true;
    }
    return false;
  }

  private dispatchTo(consumer: Subscription, message: Message): boolean {
    if (!consumer.canTakeMore) return false;
    if (message.expiresAtMs !== undefined && message.expiresAtMs <= Date.now()) {
      // Taken off the queue as if delivered, but nobody sees it.
      this.expiredCount++;
      this.hold(-message.byteSize);
      return true;
    }
    // An auto-ack delivery is done with; otherwise the message waits for its ACK.
    if (consumer.deliver(message) === undefined) this.hold(-message.byteSize);
    this.deliveredCount++;
    return true;
  }
}
