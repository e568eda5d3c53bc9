// The Router owns destinations: which kind a name is, who subscribes to it, and where a
// published message goes. Sessions call it; it calls sessions back only through the
// Subscriber interface.
//
// Later seams: cross-instance relay publishes topic messages to a Bus here (publish),
// and user destinations (/user/...) resolve to per-session queues here.

import type { Header } from '../codec';
import { Message, forwardableHeaders } from './message';
import { Queue } from './queue';
import type { Delivery, Subscription } from './subscription';
import { Topic } from './topic';

export type DestinationKind = 'topic' | 'queue';

export interface RouterOptions {
  topicPrefix: string;
  queuePrefix: string;
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
}

export class Router {
  private readonly options: RouterOptions;
  private readonly topics = new Map<string, Topic>();
  private readonly queues = new Map<string, Queue>();
  private messageSeq = 0;
  private publishedCount = 0;
  private droppedFromForgottenQueues = 0;

  constructor(options: RouterOptions) {
    this.options = options;
  }

  /** The kind of a destination name, or undefined when no prefix matches. */
  kindOf(destination: string): DestinationKind | undefined {
    const { topicPrefix, queuePrefix } = this.options;
    if (destination.length > topicPrefix.length && destination.startsWith(topicPrefix)) return 'topic';
    if (destination.length > queuePrefix.length && destination.startsWith(queuePrefix)) return 'queue';
    return undefined;
  }

  /** Build the message a SEND publishes: id assigned, reserved headers stripped. */
  createMessage(destination: string, sendHeaders: readonly Header[], body: Buffer): Message {
    // A decoded body is a view into the socket's read buffer; a queue may keep the message
    // for long, so it gets its own copy rather than pinning the whole chunk.
    const ownBody = this.kindOf(destination) === 'queue' ? Buffer.from(body) : body;
    return new Message(`${this.options.messageIdPrefix}-${++this.messageSeq}`, destination, forwardableHeaders(sendHeaders), ownBody);
  }

  publish(message: Message): void {
    this.publishedCount++;
    const kind = this.kindOf(message.destination);
    if (kind === 'topic') {
      this.topics.get(message.destination)?.publish(message);
    } else if (kind === 'queue') {
      this.queueFor(message.destination).publish(message);
    }
  }

  subscribe(subscription: Subscription): void {
    if (this.kindOf(subscription.destination) === 'queue') {
      this.queueFor(subscription.destination).addConsumer(subscription);
      return;
    }
    let topic = this.topics.get(subscription.destination);
    if (topic === undefined) {
      topic = new Topic(subscription.destination);
      this.topics.set(subscription.destination, topic);
    }
    topic.add(subscription);
  }

  /** Remove a subscription; its unacknowledged queue messages go to other consumers. */
  unsubscribe(subscription: Subscription): void {
    const destination = subscription.destination;
    const queue = this.queues.get(destination);
    if (queue !== undefined) {
      queue.removeConsumer(subscription);
      if (queue.isIdle) this.forgetQueue(queue);
      return;
    }
    const topic = this.topics.get(destination);
    if (topic === undefined) return;
    topic.remove(subscription);
    subscription.takeAllPending();
    if (topic.subscriberCount === 0) this.topics.delete(destination);
  }

  ack(subscription: Subscription, ackId: string): Delivery[] {
    return subscription.settle(ackId);
  }

  /** NACKed queue messages are redelivered, preferably to another consumer; topic ones are dropped. */
  nack(subscription: Subscription, ackId: string): Delivery[] {
    const settled = subscription.settle(ackId);
    const queue = this.queues.get(subscription.destination);
    if (queue !== undefined && settled.length > 0) queue.giveBack(settled.map((d) => d.message), subscription);
    return settled;
  }

  /** A subscriber that was too slow can take messages again. */
  resumeSubscription(subscription: Subscription): void {
    this.queues.get(subscription.destination)?.drain();
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
    return { topics: this.topics.size, queues: this.queues.size, published: this.publishedCount, queuedMessages, droppedFromQueues };
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
