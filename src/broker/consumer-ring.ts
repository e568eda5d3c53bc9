// The consumers of one queue, and how a message is handed to one of them. Written once and
// used by both queue backends (memory: broker/queue.ts; Redis: cluster/redis-queues.ts, for
// this instance's consumers), so both choose consumers the same way:
// - round robin over the consumers that can take more (writable, under their prefetch);
// - a message given back (NACK, consumer gone) is marked redelivered and goes to another
//   consumer first; back to its giver only when the backend allows it;
// - a message whose `expires` time has passed is taken off and never delivered;
// - handing out from a backlog stops at the first message nobody can take, so order is kept.

import type { Backlog } from './backlog';
import type { Message } from './message';
import type { Delivery, Subscription } from './subscription';

/** What the owner of a ring does when a hand-out ends a message's life in the queue. */
export interface HandOutHooks<M extends Message> {
  /** Delivered and owing no ACK (auto mode, or kept from the subscriber by its gate). */
  done(message: M): void;
  /** Its `expires` time had passed: discarded, never delivered. */
  expired(message: M): void;
}

/** The messages of queue deliveries (a queue subscription keeps them all). */
export function messagesOf<M extends Message = Message>(deliveries: readonly Delivery[]): M[] {
  const messages: M[] = [];
  for (const delivery of deliveries) if (delivery.message !== undefined) messages.push(delivery.message as M);
  return messages;
}

export class ConsumerRing<M extends Message> {
  /** Messages handed to a consumer (redeliveries too). */
  deliveredCount = 0;
  private readonly consumers: Subscription[] = [];
  /** Where the round robin goes on. */
  private next = 0;
  private readonly hooks: HandOutHooks<M>;

  constructor(hooks: HandOutHooks<M>) {
    this.hooks = hooks;
  }

  get size(): number {
    return this.consumers.length;
  }

  includes(subscription: Subscription): boolean {
    return this.consumers.includes(subscription);
  }

  [Symbol.iterator](): IterableIterator<Subscription> {
    return this.consumers[Symbol.iterator]();
  }

  add(subscription: Subscription): void {
    subscription.keepsMessages = true;
    this.consumers.push(subscription);
  }

  /** False if it was not a consumer. Its unacknowledged messages stay with it: the caller gives them back. */
  remove(subscription: Subscription): boolean {
    const index = this.consumers.indexOf(subscription);
    if (index === -1) return false;
    this.consumers.splice(index, 1);
    if (this.next > index) this.next--;
    return true;
  }

  /** Delivered to a consumer and not acknowledged yet. */
  get unackedCount(): number {
    let count = 0;
    for (const consumer of this.consumers) count += consumer.pending.size;
    return count;
  }

  /** When the oldest unacknowledged message was published; undefined if none. */
  get oldestUnackedAtMs(): number | undefined {
    let oldest: number | undefined;
    for (const consumer of this.consumers) {
      const first = consumer.pending.values().next().value?.message?.createdAtMs;
      if (first !== undefined && (oldest === undefined || first < oldest)) oldest = first;
    }
    return oldest;
  }

  /**
   * Hand `message` to the next consumer that can take it, other than `except`. True: it left
   * the caller's hands (delivered, or expired and discarded); false: nobody could take it.
   */
  offer(message: M, except?: Subscription): boolean {
    if (message.expiresAtMs !== undefined && message.expiresAtMs <= Date.now()) {
      this.hooks.expired(message);
      return true;
    }
    const consumers = this.consumers;
    for (let tries = 0; tries < consumers.length; tries++) {
      if (this.next >= consumers.length) this.next = 0;
      const consumer = consumers[this.next++]!;
      if (consumer !== except && consumer.canTakeMore) {
        this.deliver(consumer, message);
        return true;
      }
    }
    return false;
  }

  /**
   * Messages `from` NACKed, or a gone consumer's unacknowledged ones (`from` undefined):
   * marked redelivered and offered to another consumer first, to `from` itself only if
   * `mayReturnToGiver` (the giver is the queue's last resort). Returns those nobody took,
   * in their order.
   */
  giveBack(messages: readonly M[], from: Subscription | undefined, mayReturnToGiver: boolean): M[] {
    const left: M[] = [];
    for (const message of messages) {
      message.isRedelivered = true;
      if (this.offer(message, from)) continue;
      if (mayReturnToGiver && from !== undefined && from.canTakeMore && this.includes(from)) {
        this.deliver(from, message);
        continue;
      }
      left.push(message);
    }
    return left;
  }

  /** Hand out from the front of `backlog` while a consumer takes; returns how many left it. */
  drain(backlog: Backlog<M>): number {
    let taken = 0;
    for (let message = backlog.peek(); message !== undefined && this.offer(message); message = backlog.peek()) {
      backlog.shift();
      taken++;
    }
    return taken;
  }

  private deliver(consumer: Subscription, message: M): void {
    this.deliveredCount++;
    if (consumer.deliver(message) === undefined) this.hooks.done(message);
  }
}
