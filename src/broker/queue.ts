// A queue: each message goes to one consumer, round robin among those that can take it.
//
// Invariants:
// - A message is either stored here, or pending on exactly one subscription, never both.
// - Stored messages are bounded by maxMessages: past it the oldest is dropped and counted.
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

export class Queue {
  readonly destination: string;
  /** Messages thrown away because the queue was full. */
  droppedCount = 0;
  /** Messages handed to a consumer (redeliveries too). */
  deliveredCount = 0;
  private readonly maxMessages: number;
  private stored: Message[] = [];
  private consumers: Subscription[] = [];
  private nextConsumer = 0;

  constructor(destination: string, maxMessages: number) {
    this.destination = destination;
    this.maxMessages = maxMessages;
  }

  get depth(): number {
    return this.stored.length;
  }

  get consumerCount(): number {
    return this.consumers.length;
  }

  /** Nothing stored and nobody listening: the router may forget this queue. */
  get isIdle(): boolean {
    return this.stored.length === 0 && this.consumers.length === 0;
  }

  publish(message: Message): void {
    if (this.stored.length === 0 && this.dispatch(message, undefined)) return;
    this.store(message);
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
    const excess = this.stored.length - this.maxMessages;
    if (excess > 0) {
      this.stored.splice(0, excess);
      this.droppedCount += excess;
    }
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
    consumer.deliver(message);
    this.deliveredCount++;
    return true;
  }
}
