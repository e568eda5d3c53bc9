// The Router owns destinations: who subscribes to what, and where a published message goes.
// Sessions call it; it calls sessions back only through the Subscriber interface.
//
// Topics and user destinations fan out (a user destination is a topic keyed by
// `/user/<userId>/...`); queues hand each message to one consumer. With a Relay (several
// instances), topic and user messages also go to the other instances, and the relay is
// told which route keys have local subscribers; local subscribers are always served
// directly, never through the relay.

import type { Header } from '../codec';
import { Destinations } from './destinations';
import type { DestinationKind, DestinationPrefixes } from './destinations';
import { Message, USER_ID_HEADER, forwardableHeaders } from './message';
import { Queue, messagesOf } from './queue';
import type { Relay } from './relay';
import type { Delivery, Subscription } from './subscription';
import { Topic } from './topic';

export interface RouterOptions extends DestinationPrefixes {
  /** Messages a queue keeps while nobody takes them; past it the oldest are dropped. */
  maxQueueMessages: number;
  /** Prefix of message ids, unique per broker instance. */
  messageIdPrefix: string;
}

export interface RouterStats {
  topics: number;
  queues: number;
  published: number;
  queuedMessages: number;
  droppedFromQueues: number;
  deliveredFromQueues: number;
}

/** Messages by destination kind, as plain integers (the metrics read them when scraped). */
export interface KindCounts {
  topic: number;
  queue: number;
  user: number;
}

export class Router {
  readonly destinations: Destinations;
  private readonly options: RouterOptions;
  /** Topics and user destinations, by route key. */
  private readonly topics = new Map<string, Topic>();
  private readonly queues = new Map<string, Queue>();
  private messageSeq = 0;
  private publishedCount = 0;
  private relay: Relay | undefined;
  private droppedFromForgottenQueues = 0;
  private deliveredFromForgottenQueues = 0;
  /** Published here (SEND or server-side publish). Queue deliveries and drops are in stats(). */
  readonly published: KindCounts = { topic: 0, queue: 0, user: 0 };
  /** Topic and user deliveries, from local and remote publishes. */
  readonly delivered: KindCounts = { topic: 0, queue: 0, user: 0 };
  /** Topic and user messages not written to a subscriber over its write limit. */
  readonly dropped: KindCounts = { topic: 0, queue: 0, user: 0 };

  constructor(options: RouterOptions) {
    this.options = options;
    this.destinations = new Destinations(options);
  }

  kindOf(destination: string): DestinationKind | undefined {
    return this.destinations.kindOf(destination);
  }

  /**
   * Build the message a SEND publishes: id assigned, reserved headers stripped, the sender's
   * user id stated. A user destination without a user id (`/user/queue/x`) means the sender.
   */
  createMessage(destination: string, sendHeaders: readonly Header[], body: Buffer, senderUserId: string): Message {
    let shown = destination;
    let routeKey = destination;
    const user = this.destinations.parseUser(destination);
    if (user !== undefined && this.kindOf(destination) === 'user') {
      routeKey = this.destinations.userRouteKey(user.userId ?? senderUserId, user.inner);
      shown = this.destinations.userFacingName(user.inner);
    }
    // A decoded body is a view into the socket's read buffer; a queue may keep the message
    // for long, so it gets its own copy rather than pinning the whole chunk.
    const ownBody = this.kindOf(destination) === 'queue' ? Buffer.from(body) : body;
    const headers: Header[] = [[USER_ID_HEADER, senderUserId], ...forwardableHeaders(sendHeaders)];
    return new Message(`${this.options.messageIdPrefix}-${++this.messageSeq}`, shown, routeKey, headers, ownBody);
  }

  /** Reach other instances through `relay`; it learns of every route key that has local subscribers now. */
  attachRelay(relay: Relay): void {
    this.relay = relay;
    for (const routeKey of this.topics.keys()) relay.setInterest(routeKey, true);
  }

  publish(message: Message): void {
    this.publishedCount++;
    const kind = this.kindOf(message.routeKey);
    if (kind === 'queue') {
      this.published.queue++;
      this.queueFor(message.routeKey).publish(message);
      return;
    }
    const counted = kind === 'user' ? 'user' : 'topic';
    this.published[counted]++;
    const topic = this.topics.get(message.routeKey);
    if (topic !== undefined) this.countFanOut(counted, topic.subscriberCount, topic.publish(message));
    this.relay?.publish(message);
  }

  /** A message another instance published: for this instance's subscribers only. */
  deliverRemote(message: Message): void {
    const topic = this.topics.get(message.routeKey);
    if (topic !== undefined) this.countFanOut(this.kindOf(message.routeKey) === 'user' ? 'user' : 'topic', topic.subscriberCount, topic.publish(message));
  }

  /** Once per message, never per delivery. `subscribers` is read before the fan-out (the count it ran over). */
  private countFanOut(kind: 'topic' | 'user', subscribers: number, delivered: number): void {
    this.delivered[kind] += delivered;
    this.dropped[kind] += subscribers - delivered;
  }

  /** Route keys of topics and user destinations with local subscribers. */
  interestKeys(): IterableIterator<string> {
    return this.topics.keys();
  }

  subscribe(subscription: Subscription): void {
    const kind = this.kindOf(subscription.destination);
    if (kind === 'queue') {
      this.queueFor(subscription.destination).addConsumer(subscription);
      return;
    }
    if (kind === 'user') {
      const user = this.destinations.parseUser(subscription.destination)!;
      subscription.routeKey = this.destinations.userRouteKey(user.userId ?? subscription.subscriber.userId, user.inner);
    }
    let topic = this.topics.get(subscription.routeKey);
    if (topic === undefined) {
      topic = new Topic(subscription.routeKey);
      this.topics.set(subscription.routeKey, topic);
      this.relay?.setInterest(subscription.routeKey, true);
    }
    topic.add(subscription);
  }

  /** Remove a subscription; its unacknowledged queue messages go to other consumers. */
  unsubscribe(subscription: Subscription): void {
    const key = subscription.routeKey;
    const queue = this.queues.get(key);
    if (queue !== undefined) {
      queue.removeConsumer(subscription);
      if (queue.isIdle) this.forgetQueue(queue);
      return;
    }
    const topic = this.topics.get(key);
    if (topic === undefined) return;
    topic.remove(subscription);
    subscription.takeAllPending();
    if (topic.subscriberCount === 0) {
      this.topics.delete(key);
      this.relay?.setInterest(key, false);
    }
  }

  ack(subscription: Subscription, ackId: string): Delivery[] {
    const settled = subscription.settle(ackId);
    if (settled.length > 0) this.queues.get(subscription.routeKey)?.drain(); // room under the prefetch limit
    return settled;
  }

  /** NACKed queue messages are redelivered, preferably to another consumer; topic ones are dropped. */
  nack(subscription: Subscription, ackId: string): Delivery[] {
    const settled = subscription.settle(ackId);
    const queue = this.queues.get(subscription.routeKey);
    if (queue !== undefined && settled.length > 0) {
      queue.giveBack(messagesOf(settled), subscription);
      queue.drain();
    }
    return settled;
  }

  /** A subscriber that was too slow can take messages again. */
  resumeSubscription(subscription: Subscription): void {
    this.queues.get(subscription.routeKey)?.drain();
  }

  queueDepth(destination: string): number {
    return this.queues.get(destination)?.depth ?? 0;
  }

  stats(): RouterStats {
    let queuedMessages = 0;
    let droppedFromQueues = this.droppedFromForgottenQueues;
    let deliveredFromQueues = this.deliveredFromForgottenQueues;
    for (const queue of this.queues.values()) {
      queuedMessages += queue.depth;
      droppedFromQueues += queue.droppedCount;
      deliveredFromQueues += queue.deliveredCount;
    }
    return { topics: this.topics.size, queues: this.queues.size, published: this.publishedCount, queuedMessages, droppedFromQueues, deliveredFromQueues };
  }

  private forgetQueue(queue: Queue): void {
    this.droppedFromForgottenQueues += queue.droppedCount;
    this.deliveredFromForgottenQueues += queue.deliveredCount;
    this.queues.delete(queue.destination);
  }

  private queueFor(destination: string): Queue {
    let queue = this.queues.get(destination);
    if (queue === undefined) {
      queue = new Queue(destination, this.options.maxQueueMessages);
      this.queues.set(destination, queue);
    }
    return queue;
  }
}
