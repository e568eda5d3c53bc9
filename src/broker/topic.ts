// A topic: every subscriber gets its own copy of every message.
//
// The subscriber list is copied on change, so a fan-out iterates a plain array that a
// subscribe or unsubscribe during the loop cannot disturb.

import type { Message } from './message';
import type { Subscription } from './subscription';

export class Topic {
  readonly destination: string;
  private subscriptions: Subscription[] = [];

  constructor(destination: string) {
    this.destination = destination;
  }

  get subscriberCount(): number {
    return this.subscriptions.length;
  }

  add(subscription: Subscription): void {
    this.subscriptions = [...this.subscriptions, subscription];
  }

  remove(subscription: Subscription): void {
    this.subscriptions = this.subscriptions.filter((s) => s !== subscription);
  }

  /** Fan out; a subscriber over its write limit is handed to its slow-consumer policy. */
  publish(message: Message): number {
    const subscriptions = this.subscriptions;
    let delivered = 0;
    for (let i = 0; i < subscriptions.length; i++) {
      const subscription = subscriptions[i]!;
      if (subscription.subscriber.isWritable) {
        subscription.deliver(message);
        delivered++;
      } else {
        subscription.subscriber.onSlowConsumer(subscription, message);
      }
    }
    return delivered;
  }
}
