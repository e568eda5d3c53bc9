// A subscription and the deliveries it owes an acknowledgement for.
//
// The broker sees a session only through Subscriber, so it never imports session code.
// Pending deliveries are kept in delivery order (Map insertion order): a `client` mode
// ACK covers the acked message and every earlier one (STOMP 1.2 "SUBSCRIBE ack Header").
// They are bounded by maxUnacked: a queue hands a full subscription nothing more (prefetch);
// a topic keeps delivering and forgets the oldest owed ack (nothing would be redelivered).
// A topic message dropped for a slow subscriber is counted, and the next MESSAGE the
// subscription gets says how many it missed (x-dropped), so the client can resynchronize.

import { escapeHeader } from '../codec';
import type { StompVersion } from '../codec';
import type { FlowSubscriber } from './flow';
import type { Message } from './message';

export type AckMode = 'auto' | 'client' | 'client-individual';

/** On a MESSAGE: how many messages of this subscription were dropped just before it (slow consumer). */
export const DROPPED_HEADER = 'x-dropped';

/** What the broker needs of a session (flow control reads how far behind it is). */
export interface Subscriber extends FlowSubscriber {
  readonly sessionId: string;
  /** The user the session is bound to: user destinations resolve against it. */
  readonly userId: string;
  readonly version: StompVersion;
  /** False while the session's outbound buffer is over its limit. */
  readonly isWritable: boolean;
  write(bytes: Buffer, isBinary?: boolean): void;
  /** A fresh id for the `ack` header, unique within the session. */
  nextAckId(): string;
  /**
   * A message could not be written because the session reads too slowly. True: it was
   * dropped (the subscription counts it and tells the client); false: the session is going.
   */
  onSlowConsumer(subscription: Subscription, message: Message): boolean;
}

/**
 * What holding a subscription costs, as the session and pending-budget limits count it.
 * Measured (1000 subscriptions a session, heap after GC): ~700 bytes for short ids on a shared
 * topic, ~940 on a topic of its own; each byte of the id is kept about three times (the id,
 * the MESSAGE head buffer, its cache key), each byte of the destination about twice.
 */
export function subscriptionHeldBytes(id: string, destination: string): number {
  return SUBSCRIPTION_OVERHEAD_BYTES + 3 * Buffer.byteLength(id) + 2 * Buffer.byteLength(destination);
}
const SUBSCRIPTION_OVERHEAD_BYTES = 1024;

export interface Delivery {
  readonly ackId: string;
  readonly messageId: string;
  /** Kept only where it may be redelivered (queues); a topic owes just the ack. */
  readonly message: Message | undefined;
}

/** What an auto-mode subscription (most of them) owes: nothing, shared. */
const NOTHING_OWED: ReadonlyMap<string, Delivery> = new Map();

export class Subscription {
  readonly id: string;
  /** What the client subscribed to. */
  readonly destination: string;
  /** Where the router files it (differs for user destinations); set by the router. */
  routeKey: string;
  /** Whether owed messages are kept for redelivery (queues); set by the router. */
  keepsMessages = false;
  readonly ackMode: AckMode;
  readonly maxUnacked: number;
  readonly subscriber: Subscriber;
  /** ackId → delivery, oldest first; made on the first delivery that owes an ack (never in auto mode). */
  private owed: Map<string, Delivery> | undefined;
  /** Messages this subscription missed because its subscriber read too slowly. */
  droppedCount = 0;
  /** Of those, the ones the client was not told of yet: the next MESSAGE says how many. */
  private untoldDrops = 0;
  /**
   * When set, asked before every delivery; false keeps the message from this subscription
   * (presence holds a snapshot subscription's messages until its member list is written).
   */
  gate: ((message: Message) => boolean) | undefined;
  /** "MESSAGE\nsubscription:<id>\n", reused by every auto-mode delivery. */
  private readonly head: Buffer;
  /** Identifies `head` among subscriptions: the same key means the same bytes. */
  private readonly headKey: string;
  private readonly escapedId: string;

  constructor(subscriber: Subscriber, id: string, destination: string, ackMode: AckMode, maxUnacked = Infinity) {
    this.subscriber = subscriber;
    this.id = id;
    this.destination = destination;
    this.routeKey = destination;
    this.ackMode = ackMode;
    this.maxUnacked = maxUnacked;
    this.escapedId = escapeHeader(id, subscriber.version);
    this.head = Buffer.from(`MESSAGE\nsubscription:${this.escapedId}\n`);
    this.headKey = `${subscriber.version}:${id}`;
  }

  /** ackId → delivery, oldest first. Empty for auto mode. */
  get pending(): ReadonlyMap<string, Delivery> {
    return this.owed ?? NOTHING_OWED;
  }

  get needsAck(): boolean {
    return this.ackMode !== 'auto';
  }

  /** Whether a queue may hand this subscription another message. */
  get canTakeMore(): boolean {
    return this.subscriber.isWritable && (this.ackMode === 'auto' || this.pending.size < this.maxUnacked);
  }

  /** A message was not written to this subscription's slow subscriber. */
  recordDropped(): void {
    this.droppedCount++;
    this.untoldDrops++;
  }

  /** Write one MESSAGE; returns the delivery when an ACK is owed. */
  deliver(message: Message): Delivery | undefined {
    if (this.gate !== undefined && !this.gate(message)) return undefined;
    const subscriber = this.subscriber;
    if (this.ackMode === 'auto') {
      // The shared frame has no room for x-dropped: after a drop, this one delivery gets a head of its own.
      const frame = this.untoldDrops === 0 ? message.frameFor(this.head, this.headKey, subscriber.version) : undefined;
      if (frame !== undefined) {
        subscriber.write(frame, message.isBinary);
      } else {
        subscriber.write(this.untoldDrops === 0 ? this.head : Buffer.from(`MESSAGE\nsubscription:${this.escapedId}\n${this.takeDroppedHeader()}`));
        subscriber.write(message.tail(subscriber.version), message.isBinary);
      }
      return undefined;
    }
    const tail = message.tail(subscriber.version);
    const ackId = subscriber.nextAckId();
    subscriber.write(Buffer.from(`MESSAGE\nsubscription:${this.escapedId}\n${this.takeDroppedHeader()}ack:${ackId}\n`));
    subscriber.write(tail, message.isBinary);
    const delivery: Delivery = { ackId, messageId: message.id, message: this.keepsMessages ? message : undefined };
    const owed = (this.owed ??= new Map());
    if (owed.size >= this.maxUnacked) owed.delete(owed.keys().next().value);
    owed.set(ackId, delivery);
    return delivery;
  }

  /** `x-dropped:<n>` and a line break when messages were dropped since the client was last told, else ''. */
  private takeDroppedHeader(): string {
    if (this.untoldDrops === 0) return '';
    const header = `${DROPPED_HEADER}:${this.untoldDrops}\n`;
    this.untoldDrops = 0;
    return header;
  }

  /**
   * Remove and return the deliveries an ACK or NACK of `ackId` covers (client mode: it and
   * every earlier one): [] if unknown.
   */
  takeCovered(ackId: string): Delivery[] {
    const owed = this.owed;
    const target = owed?.get(ackId);
    if (owed === undefined || target === undefined) return [];
    if (this.ackMode === 'client-individual') {
      owed.delete(ackId);
      return [target];
    }
    const covered: Delivery[] = [];
    for (const [id, delivery] of owed) {
      covered.push(delivery);
      owed.delete(id);
      if (id === ackId) break;
    }
    return covered;
  }

  /** STOMP 1.1 acks name the message, not the delivery. */
  findAckIdByMessageId(messageId: string): string | undefined {
    for (const [ackId, delivery] of this.pending) if (delivery.messageId === messageId) return ackId;
    return undefined;
  }

  /** Everything still unacknowledged, oldest first; the subscription owes nothing after. */
  takeAllPending(): Delivery[] {
    const owed = this.owed;
    if (owed === undefined) return [];
    const all = [...owed.values()];
    owed.clear();
    return all;
  }
}
