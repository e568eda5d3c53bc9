// The Router owns destinations: who subscribes to what, and where a published message goes.
// Sessions call it; it calls sessions back only through the Subscriber interface.
//
// Topics and user destinations fan out (a user destination is a topic keyed by
// `/user/<userId>/...`); queues hand each message to one consumer. With a Relay (several
// instances), topic and user messages also go to the other instances, and the relay is
// told which route keys have local subscribers; local subscribers are always served
// directly, never through the relay.
//
// Flow control (flow.ts): a publish may carry the publisher's account; the topic fan-out
// tallies behind subscribers into it, and the caller asks it whether to hold the publisher.
// Every topic fan-out spends from the turn budget (turn-budget.ts), and messages from other
// instances are fanned out through RemoteFanOut (in slices, under flow control, bounded).
//
// Queue limits: each queue drops its oldest past MAX_QUEUE_MESSAGES / MAX_QUEUE_BYTES (its
// own business); what all queues hold together (MAX_TOTAL_QUEUE_BYTES) and how many exist
// (MAX_QUEUES) are checked before a publish (admit), and a refusal is the sender's ERROR:
// dropping other queues' messages to make room would be worse. Both are counted in stats()
// and logged at most every LIMIT_LOG_INTERVAL_MS.

import type { Logger } from 'pino';
import type { Header } from '../codec';
import { Destinations } from './destinations';
import { FlowControl } from './flow';
import type { FlowAccount, FlowSettings } from './flow';
import { RemoteFanOut } from './remote-fanout';
import type { RemoteFanOutStats } from './remote-fanout';
import { RELAY_PUBLISH_COST, TurnBudget } from './turn-budget';
import type { DestinationKind, DestinationPrefixes } from './destinations';
import { Message, USER_ID_HEADER, expiresAtMsOf, forwardableHeaders } from './message';
import { Queue, messagesOf } from './queue';
import type { QueueBackend, QueueRefusal, QueueStat } from './queue-backend';
import type { Relay } from './relay';
import type { QueueHooks } from './queue';
import type { Delivery, Subscription } from './subscription';
import { Topic } from './topic';

export interface RouterOptions extends DestinationPrefixes {
  /** Messages a queue keeps while nobody takes them; past it the oldest are dropped. */
  maxQueueMessages: number;
  /** Bytes a queue holds (stored and unacknowledged); past it the oldest stored are dropped. */
  maxQueueBytes?: number;
  /** Bytes all queues hold together; a publish past it is refused (QUEUE_FULL). */
  maxTotalQueueBytes?: number;
  /** Queues at once; a publish creating one more is refused (QUEUE_LIMIT). */
  maxQueues?: number;
  /** For the rate-limited drop and refusal lines. */
  logger?: Logger;
  /** Prefix of message ids, unique per broker instance. */
  messageIdPrefix: string;
  /** Publisher flow control; undefined: off (publishers are never held, slow subscribers get the policy). */
  flow?: FlowSettings;
  /** Bytes of other instances' messages that may wait for their fan-out here; past it the oldest are dropped. */
  relayBacklogBytes?: number;
}

/** RELAY_BACKLOG default when the options name none. */
const DEFAULT_RELAY_BACKLOG_BYTES = 64 * 1024 * 1024;

export interface RouterStats {
  topics: number;
  queues: number;
  published: number;
  queuedMessages: number;
  /** Stored and unacknowledged queue messages, as Message.byteSize counts them. */
  queuedBytes: number;
  /** Dropped by full queues (MAX_QUEUE_MESSAGES, MAX_QUEUE_BYTES): messages and their bytes. */
  droppedFromQueues: number;
  droppedBytesFromQueues: number;
  /** Publishes refused: all queues full (QUEUE_FULL), too many queues (QUEUE_LIMIT). */
  refusedQueueFull: number;
  refusedQueueLimit: number;
  /** Topic and user-destination messages not written to a subscriber that read too slowly (policy drop). */
  droppedForSlowConsumers: number;
  deliveredFromQueues: number;
}

/** Messages by destination kind, as plain integers (the metrics read them when scraped). */
export interface KindCounts {
  topic: number;
  queue: number;
  user: number;
}

/** Why a publish is refused: a stable code for the ERROR, and a sentence. */
export type PublishRefusal = QueueRefusal;

/** At most one line per this about drops and refusals, with the counts since the last one. */
export const LIMIT_LOG_INTERVAL_MS = 10_000;

export class Router {
  readonly destinations: Destinations;
  private readonly options: RouterOptions;
  /** Topics and user destinations, by route key. */
  private readonly topics = new Map<string, Topic>();
  private readonly queues = new Map<string, Queue>();
  private messageSeq = 0;
  private publishedCount = 0;
  private relay: Relay | undefined;
  /** Where queues live when they are shared by several instances; undefined: here, in memory. */
  private queueBackend: QueueBackend | undefined;
  private droppedFromForgottenQueues = 0;
  private droppedBytesFromForgottenQueues = 0;
  private queuedBytes = 0;
  private refusedQueueFull = 0;
  private refusedQueueLimit = 0;
  private readonly queueLimits: { maxMessages: number; maxBytes: number };
  private readonly queueHooks: QueueHooks;
  /** Counts not logged yet, and when the last line went out. */
  private unlogged = { droppedMessages: 0, droppedBytes: 0, refusedQueueFull: 0, refusedQueueLimit: 0 };
  private lastLimitLogAt = 0;
  private limitLogTimer: NodeJS.Timeout | undefined;
  private droppedForSlowConsumers = 0;
  private deliveredFromForgottenQueues = 0;
  /** Published here (SEND or server-side publish). Queue deliveries and drops are in stats(). */
  readonly published: KindCounts = { topic: 0, queue: 0, user: 0 };
  /** Topic and user deliveries, from local and remote publishes. */
  readonly delivered: KindCounts = { topic: 0, queue: 0, user: 0 };
  /** Topic and user messages not written to a subscriber over its write limit. */
  readonly dropped: KindCounts = { topic: 0, queue: 0, user: 0 };
  /** undefined when flow control is off. */
  readonly flow: FlowControl | undefined;
  /** Topic fan-out work per event-loop turn: publishers wait for the next turn past it. */
  readonly turn = new TurnBudget();
  private readonly remoteFanOut: RemoteFanOut;

  constructor(options: RouterOptions) {
    this.options = options;
    this.flow = options.flow === undefined ? undefined : new FlowControl(options.flow);
    this.remoteFanOut = new RemoteFanOut({
      deliver: (message, account) => this.deliverRemoteNow(message, account),
      drop: (message) => this.dropRemote(message),
      subscriberCount: (routeKey) => this.topics.get(routeKey)?.subscriberCount ?? 0,
      onCongestion: (waiting) => this.relay?.reportCongestion?.(waiting),
      turn: this.turn,
      account: this.flow?.account(),
      backlogBytes: options.relayBacklogBytes ?? DEFAULT_RELAY_BACKLOG_BYTES,
    });
    this.destinations = new Destinations(options);
    this.queueLimits = { maxMessages: options.maxQueueMessages, maxBytes: options.maxQueueBytes ?? Number.MAX_SAFE_INTEGER };
    this.queueHooks = {
      heldBytesChanged: (deltaBytes) => {
        this.queuedBytes += deltaBytes;
      },
      dropped: (_queue, messageCount, byteCount) => {
        this.unlogged.droppedMessages += messageCount;
        this.unlogged.droppedBytes += byteCount;
        this.noteLimitEvent();
      },
    };
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
    const message = new Message(`${this.options.messageIdPrefix}-${++this.messageSeq}`, shown, routeKey, headers, ownBody);
    if (this.kindOf(destination) === 'queue') message.expiresAtMs = expiresAtMsOf(headers);
    return message;
  }

  /** Reach other instances through `relay`; it learns of every route key that has local subscribers now. */
  attachRelay(relay: Relay): void {
    this.relay = relay;
    for (const routeKey of this.topics.keys()) relay.setInterest(routeKey, true);
  }

  /** Keep queues in `backend` (Redis) from now on; attached before any session exists. */
  attachQueueBackend(backend: QueueBackend): void {
    this.queueBackend = backend;
  }

  get hasSharedQueues(): boolean {
    return this.queueBackend !== undefined;
  }

  /**
   * Whether `messages` may be published now (all of them: a COMMIT is all or nothing).
   * Only queues hold messages, so only queue messages can be refused. With a queue backend
   * the answer comes from Redis (a promise); in memory it is immediate.
   */
  admit(messages: readonly Message[]): PublishRefusal | undefined | Promise<PublishRefusal | undefined> {
    if (this.queueBackend !== undefined) {
      const destinations = new Set<string>();
      for (const message of messages) if (this.kindOf(message.routeKey) === 'queue') destinations.add(message.routeKey);
      return destinations.size === 0 ? undefined : this.queueBackend.admit([...destinations]);
    }
    let bytes = 0;
    let newQueues: Set<string> | undefined;
    for (const message of messages) {
      if (this.kindOf(message.routeKey) !== 'queue') continue;
      bytes += message.byteSize;
      if (!this.queues.has(message.routeKey)) (newQueues ??= new Set()).add(message.routeKey);
    }
    if (newQueues !== undefined) {
      const refusal = this.admitNewQueues(newQueues.size);
      if (refusal !== undefined) return refusal;
    }
    const maxTotalBytes = this.options.maxTotalQueueBytes ?? Number.MAX_SAFE_INTEGER;
    if (bytes > 0 && this.queuedBytes + bytes > maxTotalBytes) {
      this.refusedQueueFull++;
      this.unlogged.refusedQueueFull++;
      this.noteLimitEvent();
      return { code: 'QUEUE_FULL', message: `the queues hold ${maxTotalBytes} bytes together, their limit: try again when consumers catch up` };
    }
    return undefined;
  }

  /** Whether subscribing to `destination` may create its queue (MAX_QUEUES). */
  admitSubscription(destination: string): PublishRefusal | undefined | Promise<PublishRefusal | undefined> {
    if (this.kindOf(destination) !== 'queue') return undefined;
    if (this.queueBackend !== undefined) return this.queueBackend.admitSubscription(destination);
    if (this.queues.has(destination)) return undefined;
    return this.admitNewQueues(1);
  }

  private admitNewQueues(count: number): PublishRefusal | undefined {
    const maxQueues = this.options.maxQueues ?? Number.MAX_SAFE_INTEGER;
    if (this.queues.size + count <= maxQueues) return undefined;
    this.refusedQueueLimit++;
    this.unlogged.refusedQueueLimit++;
    this.noteLimitEvent();
    return { code: 'QUEUE_LIMIT', message: `the server holds ${maxQueues} queues, its limit: no new queue now` };
  }

  /**
   * Publish an admitted message. A queue message with a queue backend resolves once it is
   * stored (or refused: UNAVAILABLE when Redis is away); everything else is done at once.
   */
  publish(message: Message, account?: FlowAccount): void | Promise<PublishRefusal | undefined> {
    this.publishedCount++;
    const kind = this.kindOf(message.routeKey);
    if (kind === 'queue') {
      this.published.queue++;
      if (this.queueBackend !== undefined) return this.queueBackend.publish(message);
      this.queueFor(message.routeKey).publish(message);
      return;
    }
    const counted = kind === 'user' ? 'user' : 'topic';
    this.published[counted]++;
    const topic = this.topics.get(message.routeKey);
    if (topic !== undefined) this.countFanOut(counted, topic.subscriberCount, topic.publish(message, account?.tally));
    if (this.relay !== undefined) {
      this.relay.publish(message);
      this.turn.spend(RELAY_PUBLISH_COST);
      account?.noteRemote(message.routeKey);
    }
  }

  /**
   * A message another instance published: for this instance's subscribers only. Delivered at
   * once unless earlier ones still wait (their subscribers are behind, or this turn's
   * fan-out work is done): then after them, in order.
   */
  deliverRemote(message: Message): void {
    this.remoteFanOut.push(message);
  }

  /** While the relay to other instances is congested: a promise to wait for before publishing more; else undefined. */
  relayBackpressure(): Promise<void> | undefined {
    return this.relay?.backpressure?.();
  }

  /** Other instances' messages waiting here for their fan-out. */
  get remoteStats(): RemoteFanOutStats {
    return this.remoteFanOut.stats;
  }

  private deliverRemoteNow(message: Message, account: FlowAccount | undefined): void {
    const topic = this.topics.get(message.routeKey);
    if (topic !== undefined) this.countFanOut(this.kindOf(message.routeKey) === 'user' ? 'user' : 'topic', topic.subscriberCount, topic.publish(message, account?.tally));
  }

  /** The remote backlog is full: `message` is not delivered here, and each subscriber is told (x-dropped). */
  private dropRemote(message: Message): void {
    const topic = this.topics.get(message.routeKey);
    if (topic === undefined) return;
    const drops = topic.recordDroppedForAll();
    this.dropped[this.kindOf(message.routeKey) === 'user' ? 'user' : 'topic'] += drops;
  }

  /** Once per message, never per delivery. `subscribers` is read before the fan-out (the count it ran over); `drops` is what it dropped. */
  private countFanOut(kind: 'topic' | 'user', subscribers: number, drops: number): void {
    this.delivered[kind] += subscribers - drops;
    this.dropped[kind] += drops;
    this.droppedForSlowConsumers += drops;
    this.turn.spend(subscribers);
  }

  /** Stop flow control's and the remote fan-out's timers (the broker stops). */
  close(): void {
    this.flow?.close();
    this.remoteFanOut.close();
  }

  /**
   * Add a subscription. For a topic or user destination whose channel the relay is still
   * subscribing to, returns a promise that resolves once messages from other instances
   * arrive (the SUBSCRIBE's RECEIPT waits for it); otherwise nothing.
   */
  subscribe(subscription: Subscription): Promise<void> | undefined {
    const kind = this.kindOf(subscription.destination);
    if (kind === 'queue') {
      if (this.queueBackend !== undefined) this.queueBackend.subscribe(subscription);
      else this.queueFor(subscription.destination).addConsumer(subscription);
      return undefined;
    }
    if (kind === 'user') {
      const user = this.destinations.parseUser(subscription.destination)!;
      subscription.routeKey = this.destinations.userRouteKey(user.userId ?? subscription.subscriber.userId, user.inner);
    }
    let topic = this.topics.get(subscription.routeKey);
    if (topic === undefined) {
      topic = new Topic(subscription.routeKey);
      this.topics.set(subscription.routeKey, topic);
      const ready = this.relay?.setInterest(subscription.routeKey, true);
      if (ready !== undefined) {
        const created = topic;
        created.relayReady = ready.then(() => {
          created.relayReady = undefined;
        });
      }
    }
    topic.add(subscription);
    return topic.relayReady;
  }

  /** Remove a subscription; its unacknowledged queue messages go to other consumers. */
  unsubscribe(subscription: Subscription): void {
    const key = subscription.routeKey;
    if (this.queueBackend !== undefined && this.kindOf(key) === 'queue') {
      this.queueBackend.unsubscribe(subscription);
      return;
    }
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
    if (this.queueBackend !== undefined && subscription.keepsMessages) {
      if (settled.length > 0) this.queueBackend.acknowledged(subscription, messagesOf(settled));
      return settled;
    }
    const queue = this.queues.get(subscription.routeKey);
    if (queue !== undefined && settled.length > 0) {
      queue.settled(messagesOf(settled));
      queue.drain(); // room under the prefetch limit
    }
    return settled;
  }

  /** NACKed queue messages are redelivered, preferably to another consumer; topic ones are dropped. */
  nack(subscription: Subscription, ackId: string): Delivery[] {
    const settled = subscription.settle(ackId);
    if (this.queueBackend !== undefined && subscription.keepsMessages) {
      if (settled.length > 0) this.queueBackend.nacked(subscription, messagesOf(settled));
      return settled;
    }
    const queue = this.queues.get(subscription.routeKey);
    if (queue !== undefined && settled.length > 0) {
      queue.giveBack(messagesOf(settled), subscription);
      queue.drain();
    }
    return settled;
  }

  /** A subscriber that was too slow can take messages again. */
  resumeSubscription(subscription: Subscription): void {
    if (this.queueBackend !== undefined && subscription.keepsMessages) this.queueBackend.resume(subscription);
    else this.queues.get(subscription.routeKey)?.drain();
  }

  /** Every queue: depth, consumers, oldest message age (for GET /api/queues and /metrics). */
  async queueStats(): Promise<QueueStat[]> {
    if (this.queueBackend !== undefined) return this.queueBackend.queueStats();
    const now = Date.now();
    return [...this.queues.values()].map((queue) => ({
      name: queue.destination,
      depth: queue.depth,
      unacked: queue.unackedCount,
      consumers: queue.consumerCount,
      oldestAgeMs: queue.oldestAtMs === undefined ? 0 : Math.max(0, now - queue.oldestAtMs),
      dropped: queue.droppedCount,
      expired: queue.expiredCount,
    }));
  }

  queueDepth(destination: string): number {
    return this.queues.get(destination)?.depth ?? 0;
  }

  stats(): RouterStats {
    let queuedMessages = 0;
    let droppedFromQueues = this.droppedFromForgottenQueues;
    let droppedBytesFromQueues = this.droppedBytesFromForgottenQueues;
    let deliveredFromQueues = this.deliveredFromForgottenQueues;
    for (const queue of this.queues.values()) {
      queuedMessages += queue.depth;
      droppedFromQueues += queue.droppedCount;
      droppedBytesFromQueues += queue.droppedBytes;
      deliveredFromQueues += queue.deliveredCount;
    }
    return {
      topics: this.topics.size,
      queues: this.queues.size,
      published: this.publishedCount,
      queuedMessages,
      queuedBytes: this.queuedBytes,
      droppedFromQueues,
      droppedBytesFromQueues,
      refusedQueueFull: this.refusedQueueFull,
      refusedQueueLimit: this.refusedQueueLimit,
      droppedForSlowConsumers: this.droppedForSlowConsumers,
      deliveredFromQueues,
    };
  }

  private forgetQueue(queue: Queue): void {
    this.droppedFromForgottenQueues += queue.droppedCount;
    this.droppedBytesFromForgottenQueues += queue.droppedBytes;
    this.deliveredFromForgottenQueues += queue.deliveredCount;
    this.queues.delete(queue.destination);
  }

  private queueFor(destination: string): Queue {
    let queue = this.queues.get(destination);
    if (queue === undefined) {
      queue = new Queue(destination, this.queueLimits, this.queueHooks);
      this.queues.set(destination, queue);
    }
    return queue;
  }

  /** A drop or refusal happened: log now, or once the interval since the last line is over. */
  private noteLimitEvent(): void {
    const logger = this.options.logger;
    if (logger === undefined || this.limitLogTimer !== undefined) return;
    const waitMs = this.lastLimitLogAt + LIMIT_LOG_INTERVAL_MS - Date.now();
    if (waitMs <= 0) {
      this.logLimitEvents(logger);
      return;
    }
    this.limitLogTimer = setTimeout(() => {
      this.limitLogTimer = undefined;
      this.logLimitEvents(logger);
    }, waitMs);
    this.limitLogTimer.unref();
  }

  private logLimitEvents(logger: Logger): void {
    this.lastLimitLogAt = Date.now();
    logger.warn({ ...this.unlogged, queuedBytes: this.queuedBytes, queues: this.queues.size }, 'queue limits: messages dropped or publishes refused');
    this.unlogged = { droppedMessages: 0, droppedBytes: 0, refusedQueueFull: 0, refusedQueueLimit: 0 };
  }
}
