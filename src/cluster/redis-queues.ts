// Queues shared by every instance, on Redis Streams (the QueueBackend of multi-instance mode):
// this file is the local dispatch, what one instance does for its own consumers. Redis work
// is in queue-store.ts (one bounded operation per call, scripts in lua/), writes that need no
// answer go through queue-outbox.ts (batched per turn, kept through an outage), and consumers
// are chosen by the consumer ring the memory queues use too (broker/consumer-ring.ts).
//
// One stream per queue (`queue:{<destination>}`) with one consumer group, `stompd`, whose
// consumers are the instances (consumer name = instance id). Why streams: XADD is the store,
// the group's pending entries list (PEL) records which instance holds which unacknowledged
// message, and it survives that instance: a survivor can claim what a dead one held.
//
// - SEND: admitted (MAX_QUEUES: the `queues` set), then XADD, bounded to MAX_QUEUE_MESSAGES
//   undelivered, in a script that counts what the trim dropped. The RECEIPT waits for both.
//   Redis away: the SEND is refused (UNAVAILABLE), never accepted and lost.
// - Reading: an instance reads (one script: given-back entries first, then XREADGROUP,
//   never blocking) only as many entries as its local consumers have credit for (prefetch /
//   unacked limit minus what they hold), and hands them out round robin; so consumers on all
//   instances share a queue and no instance hoards it.
//   A read happens when a local publish or ack makes room, when another instance signals the
//   queue's wake channel (after a publish or a give-back), and every POLL_MS as a safety net.
// - ACK: XACK + XDEL (acked messages leave Redis), only while this instance still holds the
//   entry (queue-ack.lua: a fenced instance's late ACK does not remove a message given back).
//   Auto ack: when written to the socket.
// - Give back (NACK, consumer gone): another local consumer first (the entry stays in this
//   instance's PEL); otherwise the entry goes on the queue's `redeliver` list
//   (redeliver-entry.ts), which every reader takes from before new entries, claiming the
//   entry (XCLAIM) to itself. A stream has no "front" to re-add to, and re-adding would copy
//   the message: the list keeps the entry where it is and only moves its ownership. A
//   give-back from this instance is left to the other instances for RETAKE_OWN_MS when they
//   have consumers (NACK means "someone else"), and taken back at once when there is nobody
//   else. A taker checks the PEL owner is still the giver, so a stale or duplicated list
//   entry is never delivered twice.
// - Instance death: the reaper (membership.ts) calls reapInstance(dead): every entry in the
//   dead instance's PEL of every queue it consumed goes on the redeliver list; the survivors
//   are signalled and claim them. Bound: the reaping bound (≤ 8 s by default) plus a read.
// - `expires` (ms since epoch): an expired entry is acked, deleted and counted, never delivered.
// - Outage: publishes refused; acks and give-backs wait in the outbox and are sent when
//   Redis is back; consumers re-register and reading resumes (the poll and the 'ready' event).
//   A read whose reply the dropped connection lost left entries in this instance's PEL that
//   it does not know of: after the reconnect they are found (XPENDING) and given back.
// - Graceful stop: the sessions' unacknowledged messages are given back as they close, then
//   the instance reaps itself (whatever it still owns goes back) before it leaves.

import type { Logger } from 'pino';
import { Backlog } from '../broker/backlog';
import { ConsumerRing, messagesOf } from '../broker/consumer-ring';
import { Message, expiresAtMsOf } from '../broker/message';
import type { QueueBackend, QueueRefusal, QueueStat, QueueTotals } from '../broker/queue-backend';
import type { Delivery, Subscription } from '../broker/subscription';
import { decodeEnvelope, encodeEnvelope } from './envelope';
import type { RedisKeys } from './keys';
import { QueueOutbox } from './queue-outbox';
import { FencedError, RedisQueueStore } from './queue-store';
import type { TakenEntry } from './queue-store';
import type { RedisConnection } from './redis-client';

export { QUEUE_GROUP } from './queue-store';
/** How often each queue with local consumers is read even without a wake signal. */
export const POLL_MS = 500;
/** How long this instance leaves its own give-backs to the others (when there are others). */
export const RETAKE_OWN_MS = 1000;
/** Entries read at once per queue, at most. */
const MAX_READ = 256;
/** Pending entries of a dead instance given back per script call (bounded work in Redis). */
const REAP_BATCH = 500;
/** What an auto-ack consumer is counted for in a read (it holds nothing: bounded by its socket). */
const AUTO_CREDIT = 64;
/** How long a queue known to be in the `queues` set skips the admit round trip. */
const ADMIT_CACHE_MS = 1000;

/** A message read from a stream: it knows its entry. */
class StreamMessage extends Message {
  entryId = '';
}

/** One queue as this instance sees it: its local consumers and what it read for them. */
interface LocalQueue {
  readonly name: string;
  readonly consumers: ConsumerRing<StreamMessage>;
  /** Read (in this instance's PEL), not handed to a consumer yet. */
  readonly ready: Backlog<StreamMessage>;
  isReading: boolean;
  readAgain: boolean;
  /** The consumer count Redis was last told (or is being told). */
  registeredCount: number;
  /** After a reconnect: look for entries this instance owns and does not know of (a read whose reply was lost). */
  needsReclaim: boolean;
}

export interface RedisQueuesOptions {
  redis: RedisConnection;
  keys: RedisKeys;
  instanceId: string;
  maxQueueMessages: number;
  maxQueues: number;
  /** Wake-ups between instances (the relay's pub/sub). */
  signals: { listen(channel: string, onSignal: () => void): void; unlisten(channel: string): void; signal(channel: string): void };
  logger: Logger;
  /**
   * Whether this instance is a member now (joined, not fenced): reads, acks and give-backs
   * wait for it after a reconnect, until membership checked "was I reaped?". Default: always.
   */
  isMember?(): boolean;
  /** The liveness key and generation this instance's registrations and takes must match (single Redis). */
  fence?(): { key: string; generation: string } | undefined;
}

export interface RedisQueueCounts {
  published: number;
  refusedUnavailable: number;
  redelivered: number;
  expired: number;
}

export class RedisQueues implements QueueBackend {
  readonly counts: RedisQueueCounts = { published: 0, refusedUnavailable: 0, redelivered: 0, expired: 0 };
  private readonly options: RedisQueuesOptions;
  private readonly redis: RedisConnection;
  private readonly store: RedisQueueStore;
  private readonly outbox: QueueOutbox;
  private readonly local = new Map<string, LocalQueue>();
  /** Queue name → until when it is known to be admitted. */
  private readonly admitted = new Map<string, number>();
  /** Deliveries of local queues no longer here (their rings went with them). */
  private deliveredByForgotten = 0;
  private pollTimer: NodeJS.Timeout | undefined;
  private isStopping = false;
  /** Redis came back while this instance was not a member: what 'ready' does waits for resumeAsMember. */
  private isReadyDeferred = false;
  /** Queues whose entries this instance may hold without knowing, and that have no local consumers now. */
  private readonly toReclaim = new Set<string>();

  constructor(options: RedisQueuesOptions) {
    this.options = options;
    this.redis = options.redis;
    this.store = new RedisQueueStore(options.redis, options.keys, () => options.fence?.());
    this.outbox = new QueueOutbox({
      store: this.store,
      instanceId: options.instanceId,
      canWrite: () => this.redis.status === 'ready' && options.isMember?.() !== false,
      sendRegistration: (name) => this.sendRegistration(name),
      signal: (name) => options.signals.signal(options.keys.queueWakeChannel(name)),
      onGivenBack: (name) => {
        const queue = this.local.get(name);
        if (queue !== undefined) this.pump(queue);
      },
    });
    options.redis.on('ready', () => this.onRedisReady());
    this.pollTimer = setInterval(() => {
      this.reclaimLeftQueues();
      for (const queue of this.local.values()) this.pump(queue);
      this.outbox.flush();
    }, POLL_MS);
    this.pollTimer.unref();
  }

  private get isUp(): boolean {
    return this.redis.status === 'ready' && !this.isStopping && this.options.isMember?.() !== false;
  }

  // --- Publishing ---

  admit(messages: readonly Message[]): Promise<QueueRefusal | undefined> {
    return this.admitQueues(new Set(messages.map((m) => m.routeKey)));
  }

  admitSubscription(destination: string): Promise<QueueRefusal | undefined> {
    return this.admitQueues([destination]);
  }

  /** MAX_QUEUES, decided in Redis for all instances; a queue admitted a moment ago is not asked about again. */
  private async admitQueues(names: Iterable<string>): Promise<QueueRefusal | undefined> {
    const now = Date.now();
    for (const name of names) {
      if ((this.admitted.get(name) ?? 0) > now) continue;
      if (!this.isUp) return this.unavailable();
      let isAdmitted: boolean;
      try {
        isAdmitted = await this.store.admit(name, this.options.maxQueues);
      } catch {
        return this.unavailable();
      }
      if (!isAdmitted) return { code: 'QUEUE_LIMIT', message: `the server holds ${this.options.maxQueues} queues, its limit: no new queue now` };
      this.admitted.set(name, Date.now() + ADMIT_CACHE_MS);
    }
    return undefined;
  }

  async publish(message: Message): Promise<QueueRefusal | undefined> {
    if (!this.isUp) return this.unavailable();
    const { instanceId, maxQueueMessages } = this.options;
    const name = message.routeKey;
    const payload = encodeEnvelope({ origin: instanceId, messageId: message.id, destination: message.destination, routeKey: name, headers: message.headers, body: message.body });
    let isCreated: boolean;
    try {
      isCreated = await this.store.publish(name, payload, maxQueueMessages);
    } catch {
      return this.unavailable();
    }
    // The queue was forgotten between the admit and the XADD: list it again.
    if (isCreated) this.outbox.track(this.store.listQueue(name));
    this.counts.published++;
    this.outbox.wake(name);
    const queue = this.local.get(name);
    if (queue !== undefined) this.pump(queue);
    return undefined;
  }

  private unavailable(): QueueRefusal {
    this.counts.refusedUnavailable++;
    return { code: 'UNAVAILABLE', message: 'the queue store (Redis) is unavailable: message not accepted, try again' };
  }

  // --- Consumers ---

  subscribe(subscription: Subscription): void {
    const name = subscription.routeKey;
    let queue = this.local.get(name);
    if (queue === undefined) {
      queue = this.createLocal(name);
      this.local.set(name, queue);
      const wakeQueue = queue;
      this.options.signals.listen(this.options.keys.queueWakeChannel(name), () => this.pump(wakeQueue));
      this.outbox.track(this.store.listConsumed(this.options.instanceId, name));
    }
    queue.consumers.add(subscription);
    this.register(queue);
    this.pump(queue);
  }

  unsubscribe(subscription: Subscription): void {
    const queue = this.local.get(subscription.routeKey);
    if (queue === undefined || !queue.consumers.remove(subscription)) return;
    this.redeliver(queue, messagesOf<StreamMessage>(subscription.takeAllPending()), undefined);
    if (queue.consumers.size === 0) {
      // Read but never shown: back for the others, not marked redelivered.
      this.giveBack(queue.name, queue.ready.takeAll(), false);
      this.local.delete(queue.name);
      this.deliveredByForgotten += queue.consumers.deliveredCount;
      this.options.signals.unlisten(this.options.keys.queueWakeChannel(queue.name));
    }
    this.register(queue);
  }

  acknowledged(subscription: Subscription, deliveries: readonly Delivery[]): void {
    this.outbox.ack(subscription.routeKey, entryIdsOf(messagesOf<StreamMessage>(deliveries)));
    const queue = this.local.get(subscription.routeKey);
    if (queue !== undefined) this.pump(queue); // room under the prefetch limit
  }

  nacked(subscription: Subscription, deliveries: readonly Delivery[]): void {
    const queue = this.local.get(subscription.routeKey);
    if (queue === undefined) return;
    this.redeliver(queue, messagesOf<StreamMessage>(deliveries), subscription);
    this.pump(queue);
  }

  resume(subscription: Subscription): void {
    const queue = this.local.get(subscription.routeKey);
    if (queue !== undefined) this.pump(queue);
  }

  private createLocal(name: string): LocalQueue {
    const consumers = new ConsumerRing<StreamMessage>({
      // Auto ack: written to the socket is acknowledged.
      done: (message) => this.outbox.ack(name, [message.entryId]),
      expired: (message) => {
        this.counts.expired++;
        this.outbox.countExpired(name);
        this.outbox.ack(name, [message.entryId]);
      },
    });
    return { name, consumers, ready: new Backlog(), isReading: false, readAgain: false, registeredCount: 0, needsReclaim: false };
  }

  /**
   * Tell Redis how many consumers this instance has on `queue` (forgetting the queue when
   * nothing is left of it), with the next flush: after the acks and give-backs queued before.
   */
  private register(queue: LocalQueue): void {
    if (queue.consumers.size !== queue.registeredCount) this.outbox.register(queue.name);
  }

  private sendRegistration(name: string): void {
    const { instanceId } = this.options;
    const queue = this.local.get(name);
    const count = queue?.consumers.size ?? 0;
    if (queue !== undefined) queue.registeredCount = count;
    const done = this.store
      .setConsumers(name, instanceId, count)
      .then(async (isForgotten) => {
        if (queue !== undefined && this.local.get(name) === queue) this.pump(queue); // the group exists now
        if (!isForgotten) return;
        this.admitted.delete(name);
        // Subscribed again meanwhile: its registration (queued after this one) re-creates the
        // queue, which must stay listed, here (for the reaper) and in `queues`.
        if (this.local.has(name)) return;
        await this.store.unlistQueue(name);
        await this.store.unlistConsumed(instanceId, name);
      })
      .catch((err: unknown) => {
        if (queue !== undefined) queue.registeredCount = -1;
        // Told again when Redis is back; refused as fenced, once the instance has joined again
        // (its check runs every heart-beat): tried again every poll, not in a loop.
        if (err instanceof FencedError) setTimeout(() => this.outbox.register(name), POLL_MS).unref();
        else this.outbox.register(name);
      });
    this.outbox.track(done);
  }

  // --- Reading and delivering ---

  /** Read and hand out what local consumers have room for; one read at a time per queue. */
  private pump(queue: LocalQueue): void {
    if (queue.isReading) {
      queue.readAgain = true;
      return;
    }
    queue.consumers.drain(queue.ready);
    if (!this.isUp || this.credit(queue) <= queue.ready.length) return;
    queue.isReading = true;
    let hasFailed = false;
    this.outbox.track(
      this.read(queue)
        .catch((err: unknown) => {
          hasFailed = true;
          this.options.logger.debug({ err, queue: queue.name }, 'queue read failed; retried on the next poll');
        })
        .finally(() => {
          queue.isReading = false;
          if (this.local.get(queue.name) !== queue && queue.ready.length > 0) {
            // The last consumer left while the read was under way.
            this.giveBack(queue.name, queue.ready.takeAll(), false);
          }
          // A read that failed may have run in Redis all the same (a reply that timed out on a
          // connection that stayed up): what it took is in this instance's pending entries,
          // known to nobody. The next read first gives back what is held there untracked.
          if (hasFailed) this.reclaimBeforeNextRead(queue.name);
        }),
    );
  }

  private reclaimBeforeNextRead(name: string): void {
    const current = this.local.get(name);
    if (current !== undefined) current.needsReclaim = true;
    else this.toReclaim.add(name);
  }

  /** On the poll: reclaim for queues no longer consumed here (a read of theirs failed). */
  private reclaimLeftQueues(): void {
    if (!this.isUp) return;
    for (const name of this.toReclaim) {
      this.toReclaim.delete(name);
      const queue = this.local.get(name);
      if (queue !== undefined) {
        queue.needsReclaim = true;
        continue;
      }
      this.outbox.track(this.reclaimUntracked(name, undefined).catch(() => this.toReclaim.add(name)));
    }
  }

  private async read(queue: LocalQueue): Promise<void> {
    const { instanceId } = this.options;
    if (queue.needsReclaim) {
      queue.needsReclaim = false; // while this read runs no other can: what is not tracked now is lost
      await this.reclaimUntracked(queue.name, queue);
    }
    for (;;) {
      queue.readAgain = false;
      const want = Math.min(MAX_READ, this.credit(queue) - queue.ready.length);
      if (want <= 0 || !this.isUp || this.local.get(queue.name) !== queue) return;
      let got = 0;
      const taken = await this.store.take(queue.name, instanceId, want, Date.now(), RETAKE_OWN_MS);
      // A give-back of this instance's, listed twice (a reap's and its own, or a reclaim's),
      // comes back while this instance still holds the entry: it is not a second message.
      const held = taken.length > 0 ? this.trackedEntries(queue.name, queue) : undefined;
      for (const entry of taken) {
        if (held?.has(entry.entryId) === true) continue;
        held?.add(entry.entryId);
        const message = this.decode(queue.name, entry);
        if (message === undefined) continue;
        message.isRedelivered = entry.wasDelivered;
        if (message.isRedelivered) this.counts.redelivered++;
        queue.ready.push(message);
        got++;
      }
      queue.consumers.drain(queue.ready);
      if (got === 0 && !queue.readAgain) return;
    }
  }

  private decode(name: string, { entryId, fields }: TakenEntry): StreamMessage | undefined {
    let payload: Buffer | undefined;
    for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i]!.toString() === 'm') payload = fields[i + 1];
    try {
      if (payload === undefined) throw new Error('no payload field');
      const e = decodeEnvelope(payload);
      const message = new StreamMessage(e.messageId, e.destination, e.routeKey, e.headers, e.body);
      message.entryId = entryId;
      message.createdAtMs = Number(entryId.split('-')[0]);
      message.expiresAtMs = expiresAtMsOf(e.headers);
      return message;
    } catch (err) {
      this.options.logger.warn({ err, queue: name, entryId }, 'undecodable queue entry dropped');
      this.outbox.ack(name, [entryId]);
      return undefined;
    }
  }

  /** How many more messages the local consumers can take now. */
  private credit(queue: LocalQueue): number {
    let credit = 0;
    for (const consumer of queue.consumers) {
      if (!consumer.subscriber.isWritable) continue;
      credit += consumer.ackMode === 'auto' ? AUTO_CREDIT : Math.max(0, Math.min(consumer.maxUnacked, MAX_READ) - consumer.pending.size);
    }
    return credit;
  }

  /** NACKed or orphaned messages: another local consumer first, then any instance's. */
  private redeliver(queue: LocalQueue, messages: readonly StreamMessage[], from: Subscription | undefined): void {
    this.giveBack(queue.name, queue.consumers.giveBack(messages, from, false), true);
  }

  /**
   * To the redeliver list. `wasDelivered`: a client saw them. A message read but never shown
   * keeps the mark it came with: one that had been delivered before goes back as delivered.
   */
  private giveBack(name: string, messages: readonly StreamMessage[], wasDelivered: boolean): void {
    this.outbox.giveBack(
      name,
      messages.map((m) => ({ entryId: m.entryId, wasDelivered: wasDelivered || m.isRedelivered })),
    );
  }

  /**
   * Entries in this instance's PEL that it does not hold (not read-ahead, not delivered and
   * unacknowledged, not waiting to be acked or given back): a read whose reply a dropped
   * connection lost. Given back (marked redelivered: they may have been seen). Runs only when
   * no read of the queue is under way.
   */
  private async reclaimUntracked(name: string, queue: LocalQueue | undefined): Promise<void> {
    const pending = await this.store.pendingIds(name, this.options.instanceId).catch((err: unknown) => {
      if (err instanceof Error && /NOGROUP|no such key/i.test(err.message)) return []; // the queue is gone: nothing held
      throw err;
    });
    if (pending.length === 0) return;
    const tracked = this.trackedEntries(name, queue);
    const lost = pending.filter((id) => !tracked.has(id));
    if (lost.length === 0) return;
    this.options.logger.info({ queue: name, messages: lost.length }, 'queue entries this instance held without knowing (a read lost with its connection): given back');
    this.outbox.giveBack(
      name,
      lost.map((entryId) => ({ entryId, wasDelivered: true })),
    );
  }

  /** The entries of `name` this instance holds: read ahead, delivered and unacknowledged, being acked or given back. */
  private trackedEntries(name: string, queue: LocalQueue | undefined): Set<string> {
    const tracked = new Set<string>(this.outbox.waitingEntryIds(name));
    if (queue === undefined) return tracked;
    for (const message of queue.ready) tracked.add(message.entryId);
    for (const consumer of queue.consumers) {
      for (const delivery of consumer.pending.values()) if (delivery.message instanceof StreamMessage) tracked.add(delivery.message.entryId);
    }
    return tracked;
  }

  /** Call once membership holds again after a reconnect: what 'ready' deferred runs now. */
  resumeAsMember(): void {
    if (this.isReadyDeferred) this.onRedisReady();
  }

  /** Redis is back (or restarted, maybe empty): register the consumers again, send what waited, read. */
  private onRedisReady(): void {
    if (this.isStopping) return;
    if (this.options.isMember?.() === false) {
      this.isReadyDeferred = true; // not before "was I reaped?" is answered
      return;
    }
    this.isReadyDeferred = false;
    this.admitted.clear();
    const { instanceId } = this.options;
    for (const queue of this.local.values()) {
      queue.registeredCount = -1;
      this.outbox.track(this.store.listQueue(queue.name));
      this.outbox.track(this.store.listConsumed(instanceId, queue.name));
      queue.needsReclaim = true;
      this.register(queue);
      this.pump(queue);
    }
    // Queues this instance no longer consumes: nothing of theirs is tracked here any more.
    this.outbox.track(
      this.store.consumedBy(instanceId).then(async (names) => {
        for (const name of names) if (!this.local.has(name)) await this.reclaimUntracked(name, undefined).catch(() => this.toReclaim.add(name));
      }),
    );
    this.outbox.flush();
  }

  // --- Instance death ---

  /**
   * `deadId` was found dead (called by the one survivor reaping it): everything in its PEL
   * goes on the redeliver lists, for the survivors. Throws when Redis fails half-way: the
   * reap is then retried, and a list entry given twice is delivered once (TAKE checks owners).
   */
  async reapInstance(deadId: string): Promise<number> {
    let given = 0;
    for (const name of await this.store.consumedBy(deadId)) {
      let start = '-';
      do {
        const batch = await this.store.reapBatch(name, deadId, Date.now(), start, REAP_BATCH);
        given += batch.given;
        start = batch.next;
        if (batch.isForgotten) await this.store.unlistQueue(name);
      } while (start !== '');
      this.outbox.wake(name);
    }
    await this.store.forgetConsumed(deadId);
    if (given > 0 && deadId !== this.options.instanceId) this.options.logger.info({ deadInstance: deadId, messages: given }, 'unacknowledged queue messages of a dead instance given back for redelivery');
    return given;
  }

  // --- Visibility ---

  async queueStats(): Promise<QueueStat[]> {
    const names = await this.store.queueNames();
    const now = Date.now();
    return Promise.all(names.map((name) => this.store.stat(name, now)));
  }

  totals(): QueueTotals {
    let queuedMessages = 0;
    let delivered = this.deliveredByForgotten;
    for (const queue of this.local.values()) {
      queuedMessages += queue.ready.length;
      delivered += queue.consumers.deliveredCount;
    }
    // Redis holds the queues, their drops and their bytes (MAX_QUEUE_BYTES, MAX_TOTAL_QUEUE_BYTES do not apply).
    return { queues: this.local.size, queuedMessages, queuedBytes: 0, droppedMessages: 0, droppedBytes: 0, refusedQueueFull: 0, refusedQueueLimit: 0, delivered };
  }

  depth(destination: string): number {
    return this.local.get(destination)?.ready.length ?? 0;
  }

  /** Nothing: what this instance holds goes back to Redis when it stops (or is reaped). */
  heldOnlyHere(): { storedMessages: number; unacknowledgedMessages: number } {
    return { storedMessages: 0, unacknowledgedMessages: 0 };
  }

  /**
   * Leave: the sessions were closed first (their unacknowledged messages given back); send
   * what waits, stop reading, stop being listed as a consumer of anything.
   */
  async stop(timeoutMs: number): Promise<void> {
    await this.outbox.drain(timeoutMs);
    this.isStopping = true;
    clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    if (this.redis.status !== 'ready') return; // the reaper gives back what this instance held
    // The sessions are closed: whatever this instance still owns (a read that raced the stop)
    // goes back too, as if it had died; what was given back already is deduplicated by TAKE.
    try {
      await this.reapInstance(this.options.instanceId);
      this.outbox.flush(); // the wake-ups
    } catch (err) {
      this.options.logger.warn({ err }, 'could not give back the queue entries this instance still held at stop');
    }
  }
}

function entryIdsOf(messages: readonly StreamMessage[]): string[] {
  return messages.map((m) => m.entryId);
}
