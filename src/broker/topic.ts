// A topic: every subscriber gets its own copy of every message.
//
// Membership is a Set (O(1) subscribe and unsubscribe, even in rooms of 100k); a fan-out
// iterates an array snapshot rebuilt after a change, which a subscribe or unsubscribe
// during the loop (a slow consumer disconnected mid fan-out) cannot disturb.
//
// With a flow-control tally (the publisher's account), the fan-out also notes the deliveries
// that went to behind subscribers; stalled ones are not counted at all.

import type { FlowTally } from './flow';
import type { Message } from './message';
import type { Subscription } from './subscription';

export class Topic {
  readonly destination: string;
  private readonly members = new Set<Subscription>();
  /** Until the relay has subscribed to the topic's channel elsewhere (Redis mode): what a RECEIPT waits for. */
  relayReady: Promise<void> | undefined;
  private snapshot: Subscription[] | undefined;

  constructor(destination: string) {
    this.destination = destination;
  }

  get subscriberCount(): number {
    return this.members.size;
  }

  add(subscription: Subscription): void {
    this.members.add(subscription);
    this.snapshot = undefined;
  }

  remove(subscription: Subscription): void {
    if (this.members.delete(subscription)) this.snapshot = undefined;
  }

  /**
   * Fan out; a subscriber over its write limit is handed to its slow-consumer policy.
   * Returns how many subscriptions had the message dropped.
   */
  publish(message: Message, tally?: FlowTally): number {
    const subscriptions = (this.snapshot ??= [...this.members]);
    let dropped = 0;
    let stalled = 0;
    for (let i = 0; i < subscriptions.length; i++) {
      const subscription = subscriptions[i]!;
      const subscriber = subscription.subscriber;
      if (subscriber.isWritable) {
        subscription.deliver(message);
      } else if (subscriber.onSlowConsumer(subscription, message)) {
        subscription.recordDropped();
        dropped++;
      }
      if (tally !== undefined && subscriber.isBehind) {
        if (subscriber.isFlowStalled) stalled++;
        else tally.behind.push(subscriber);
      }
    }
    if (tally !== undefined) tally.deliveries += subscriptions.length - stalled;
    message.releaseFrames(); // the fan-out is over: the shared frames are in the sockets' queues
    return dropped;
  }

  /** A message is not delivered to anyone here (the remote backlog is full): each subscription is told on its next MESSAGE. */
  recordDroppedForAll(): number {
    for (const subscription of this.members) subscription.recordDropped();
    return this.members.size;
  }
}
