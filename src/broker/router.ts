// The Router owns destinations: who subscribes to what, and where a published message goes.
// Sessions call it; it calls sessions back only through the Subscriber interface.
//
// Topics and user destinations fan out (a user destination is a topic keyed by
// `/user/<userId>/...`); queues hand each message to one consumer. With a Relay (several
// instances), topic and user messages also go to the other instances, and the relay is
// told which route keys have local subscribers; local subscribers are always served
// directly, never through the relay. Queues live in a QueueBackend chosen once: memory by
// default, Redis when the cluster node attaches it; the router hands it every queue
// operation and never asks which one it is.
//
// Flow control (flow.ts): a publish may carry the publisher's account; the topic fan-out
// tallies behind subscribers into it, and the caller asks it whether to hold the publisher.
// Every topic fan-out spends from the turn budget (turn-budget.ts), and messages from other
// instances are fanned out through RemoteFanOut (in slices, under flow control, bounded).

import type { Header } from '../codec';
import { Destinations } from './destinations';
import { FlowControl } from './flow';
import type { FlowAccount, FlowSettings } from './flow';
import { RemoteFanOut } from './remote-fanout';
import type { RemoteFanOutStats } from './remote-fanout';
import { RELAY_PUBLISH_COST, TurnBudget } from './turn-budget';
import type { DestinationKind, DestinationPrefixes } from './destinations';
import { MemoryQueues } from './memory-queues';
import type { MemoryQueuesOptions } from './memory-queues';
import { Message, USER_ID_HEADER, expiresAtMsOf, forwardableHeaders } from './message';
import type { Admission, QueueBackend, QueueRefusal, QueueStat } from './queue-backend';
import type { Relay } from './relay';
import type { Delivery, Subscription } from './subscription';
import { Topic } from './topic';

export interface RouterOptions extends DestinationPrefixes, MemoryQueuesOptions {
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

export class Router {
  readonly destinations: Destinations;
  private readonly options: RouterOptions;
  /** Topics and user destinations, by route key. */
  private readonly topics = new Map<string, Topic>();
  /** Where queues live: in memory unless the cluster node attached Redis. */
  private queueBackend: QueueBackend;
  private messageSeq = 0;
  private publishedCount = 0;
  private relay: Relay | undefined;
  private droppedForSlowConsumers = 0;
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
    this.queueBackend = new MemoryQueues(options);
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
    // Attached before any SUBSCRIBE's RECEIPT could wait on these (the relay's promise never rejects).
    for (const routeKey of this.topics.keys()) void relay.setInterest(routeKey, true);
  }

  /** Keep queues in `backend` (Redis) instead of memory; attached before any session exists. */
  attachQueueBackend(backend: QueueBackend): void {
    this.queueBackend = backend;
  }

  /** The queues, for what reads them as a whole (stats, shutdown). */
  get queues(): QueueBackend {
    return this.queueBackend;
  }

  /**
   * Whether `messages` may be published now (all of them: a COMMIT is all or nothing).
   * Only queues hold messages, so only queue messages can be refused; the answer is
   * immediate in memory, a promise with Redis.
   */
  admit(messages: readonly Message[]): Admission {
    let queued = 0;
    for (const message of messages) if (this.kindOf(message.routeKey) === 'queue') queued++;
    if (queued === 0) return undefined;
    // A SEND's one message is passed as it came: no array per publish on the hot path.
    return this.queueBackend.admit(queued === messages.length ? messages : messages.filter((m) => this.kindOf(m.routeKey) === 'queue'));
  }

  /** Whether subscribing to `destination` may create its queue (MAX_QUEUES). */
  admitSubscription(destination: string): Admission {
    return this.kindOf(destination) === 'queue' ? this.queueBackend.admitSubscription(destination) : undefined;
  }

  /**
   * Publish an admitted message. A queue message in Redis resolves once it is stored (or
   * refused: UNAVAILABLE when Redis is away); everything else is done at once.
   */
  publish(message: Message, account?: FlowAccount): undefined | Promise<PublishRefusal | undefined> {
    this.publishedCount++;
    const kind = this.kindOf(message.routeKey);
    if (kind === 'queue') {
      this.published.queue++;
      return this.queueBackend.publish(message);
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
    return undefined;
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
      this.queueBackend.subscribe(subscription);
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
    if (subscription.keepsMessages) {
      this.queueBackend.unsubscribe(subscription);
      return;
    }
    const topic = this.topics.get(key);
    if (topic === undefined) return;
    topic.remove(subscription);
    subscription.takeAllPending();
    if (topic.subscriberCount === 0) {
      this.topics.delete(key);
      void this.relay?.setInterest(key, false); // only a gain of interest is waited for
    }
  }

  /** What an ACK of `ackId` covers is done with; a queue consumer has room for more. */
  ack(subscription: Subscription, ackId: string): Delivery[] {
    const covered = subscription.takeCovered(ackId);
    if (covered.length > 0 && subscription.keepsMessages) this.queueBackend.acknowledged(subscription, covered);
    return covered;
  }

  /** NACKed queue messages are redelivered, preferably to another consumer; topic ones are dropped. */
  nack(subscription: Subscription, ackId: string): Delivery[] {
    const covered = subscription.takeCovered(ackId);
    if (covered.length > 0 && subscription.keepsMessages) this.queueBackend.nacked(subscription, covered);
    return covered;
  }

  /** A subscriber that was too slow can take messages again. */
  resumeSubscription(subscription: Subscription): void {
    if (subscription.keepsMessages) this.queueBackend.resume(subscription);
  }

  /** Every queue: depth, consumers, oldest message age (for GET /api/queues and /metrics). */
  queueStats(): Promise<QueueStat[]> {
    return this.queueBackend.queueStats();
  }

  /** Messages of `destination` waiting in this process for a consumer. */
  queueDepth(destination: string): number {
    return this.queueBackend.depth(destination);
  }

  stats(): RouterStats {
    const queues = this.queueBackend.totals();
    return {
      topics: this.topics.size,
      queues: queues.queues,
      published: this.publishedCount,
      queuedMessages: queues.queuedMessages,
      queuedBytes: queues.queuedBytes,
      droppedFromQueues: queues.droppedMessages,
      droppedBytesFromQueues: queues.droppedBytes,
      refusedQueueFull: queues.refusedQueueFull,
      refusedQueueLimit: queues.refusedQueueLimit,
      droppedForSlowConsumers: this.droppedForSlowConsumers,
      deliveredFromQueues: queues.delivered,
    };
  }
}
