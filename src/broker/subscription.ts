// A subscription and the deliveries it owes an acknowledgement for.
//
// The broker sees a session only through Subscriber, so it never imports session code.
// Pending deliveries are kept in delivery order (Map insertion order): a `client` mode
// ACK covers the acked message and every earlier one (STOMP 1.2 "SUBSCRIBE ack Header").
// They are bounded by maxUnacked: a queue hands a full subscription nothing more (prefetch);
// a topic keeps delivering and forgets the oldest owed ack (nothing would be redelivered).

import { escapeHeader } from '../codec';
import type { StompVersion } from '../codec';
import type { Message } from './message';

export type AckMode = 'auto' | 'client' | 'client-individual';

/** What the broker needs of a session. */
export interface Subscriber {
  readonly sessionId: string;
  /** The user the session is bound to: user destinations resolve against it. */
  readonly userId: string;
  readonly version: StompVersion;
  /** False while the session's outbound buffer is over its limit. */
  readonly isWritable: boolean;
  write(bytes: Buffer, isBinary?: boolean): void;
  /** A fresh id for the `ack` header, unique within the session. */
  nextAckId(): string;
  /** A message could not be written because the session reads too slowly. */
  onSlowConsumer(subscription: Subscription, message: Message): void;
}

export interface Delivery {
  readonly ackId: string;
  readonly messageId: string;
  /** Kept only where it may be redelivered (queues); a topic owes just the ack. */
  readonly message: Message | undefined;
}

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
  /** ackId → delivery, oldest first. Empty for auto mode. */
  readonly pending = new Map<string, Delivery>();
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

  get needsAck(): boolean {
    return this.ackMode !== 'auto';
  }

  /** Whether a queue may hand this subscription another message. */
  get canTakeMore(): boolean {
    return this.subscriber.isWritable && (this.ackMode === 'auto' || this.pending.size < this.maxUnacked);
  }

  /** Write one MESSAGE; returns the delivery when an ACK is owed. */
  deliver(message: Message): Delivery | undefined {
    const subscriber = this.subscriber;
    if (this.ackMode === 'auto') {
      const frame = message.frameFor(this.head, this.headKey, subscriber.version);
      if (frame !== undefined) {
        subscriber.write(frame, message.isBinary);
      } else {
        subscriber.write(this.head);
        subscriber.write(message.tail(subscriber.version), message.isBinary);
      }
      return undefined;
    }
    const tail = message.tail(subscriber.version);
    const ackId = subscriber.nextAckId();
    subscriber.write(Buffer.from(`MESSAGE\nsubscription:${this.escapedId}\nack:${ackId}\n`));
    subscriber.write(tail, message.isBinary);
    const delivery: Delivery = { ackId, messageId: message.id, message: this.keepsMessages ? message : undefined };
    if (this.pending.size >= this.maxUnacked) this.pending.delete(this.pending.keys().next().value!);
    this.pending.set(ackId, delivery);
    return delivery;
  }

  /** Remove and return what an ACK or NACK of `ackId` settles: [] if unknown. */
  settle(ackId: string): Delivery[] {
    const target = this.pending.get(ackId);
    if (target === undefined) return [];
    if (this.ackMode === 'client-individual') {
      this.pending.delete(ackId);
      return [target];
    }
    const settled: Delivery[] = [];
    for (const [id, delivery] of this.pending) {
      settled.push(delivery);
      this.pending.delete(id);
      if (id === ackId) break;
    }
    return settled;
  }

  /** STOMP 1.1 acks name the message, not the delivery. */
  findAckIdByMessageId(messageId: string): string | undefined {
    for (const [ackId, delivery] of this.pending) if (delivery.messageId === messageId) return ackId;
    return undefined;
  }

  /** Everything still unacknowledged, oldest first; the subscription owes nothing after. */
  takeAllPending(): Delivery[] {
    const all = [...this.pending.values()];
    this.pending.clear();
    return all;
  }
}
