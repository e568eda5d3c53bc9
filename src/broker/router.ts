// The Router owns destinations: who subscribes to what, and where a published message goes.
// Sessions call it; it calls sessions back only through the Subscriber interface.
//
// Topics and user destinations fan out (a user destination is a topic keyed by
// `/user/<userId>/...`); queues hand each message to one consumer. Later seam: the
// cross-instance relay publishes topic and user messages to a Bus in publish().

import type { Header } from '../codec';
import { Destinations } from './destinations';
import type { DestinationKind, DestinationPrefixes } from './destinations';
import { Message, USER_ID_HEADER, forwardableHeaders } from './message';
import { Queue, messagesOf } from './queue';
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
  /** Topic and user-destination messages not written to a subscriber that read too slowly (policy drop). */
  droppedForSlowConsumers: number;
}

export class Router {
  readonly destinations: Destinations;
  private readonly options: RouterOptions;
  /** Topics and user destinations, by route key. */
  private readonly topics = new Map<string, Topic>();
  private readonly queues = new Map<string, Queue>();
  private messageSeq = 0;
  private publishedCount = 0;
  private droppedFromForgottenQueues = 0;
  private droppedForSlowConsumers = 0;

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

  publish(message: Message): void {
    this.publishedCount++;
    if (this.kindOf(message.routeKey) === 'queue') this.queueFor(message.routeKey).publish(message);
    else this.droppedForSlowConsumers += this.topics.get(message.routeKey)?.publish(message) ?? 0;
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
    if (topic.subscriberCount === 0) this.topics.delete(key);
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
    for (const queue of this.queues.values()) {
      queuedMessages += queue.depth;
      droppedFromQueues += queue.droppedCount;
    }
    return { topics: this.topics.size, queues: this.queues.size, published: this.publishedCount, queuedMessages, droppedFromQueues, droppedForSlowConsumers: this.droppedForSlowConsumers };
  }

  private forgetQueue(queue: Queue): void {
    this.droppedFromForgottenQueues += queue.droppedCount;
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
