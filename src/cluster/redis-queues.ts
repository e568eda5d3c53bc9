// Queues shared by every instance, on Redis Streams (the QueueBackend of multi-instance mode).
//
// One stream per queue (`queue:{<destination>}`) with one consumer group, `stompd`, whose
// consumers are the instances (consumer name = instance id). Why streams: XADD is the store,
// the group's pending entries list (PEL) records which instance holds which unacknowledged
// message, and it survives that instance: a survivor can claim what a dead one held.
//
// - SEND: admitted (MAX_QUEUES: the `queues` set), then XADD, bounded to MAX_QUEUE_MESSAGES undelivered, in a
//   script that counts what the trim dropped. The RECEIPT waits for both. Redis away: the
//   SEND is refused (UNAVAILABLE), never accepted and lost.
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
//   instance's PEL); otherwise the entry id goes on the queue's `redeliver` list, which every
//   reader takes from before new entries, claiming the entry (XCLAIM) to itself. A stream has
//   no "front" to re-add to, and re-adding would copy the message: the list keeps the entry
//   where it is and only moves its ownership. A give-back from this instance is left to the
//   other instances for RETAKE_OWN_MS when they have consumers (NACK means "someone else"),
//   and taken back at once when there is nobody else. A taker checks the PEL owner is still
//   the giver, so a stale or duplicated list entry is never delivered twice.
// - Instance death: the reaper (membership.ts) calls reapInstance(dead): every entry in the
//   dead instance's PEL of every queue it consumed goes on the redeliver list; the survivors
//   are signalled and claim them. Bound: the reaping bound (≤ 8 s by default) plus a read.
// - `expires` (ms since epoch): an expired entry is acked, deleted and counted, never delivered.
// - Outage: publishes refused; acks and give-backs that failed are kept and sent again when
//   Redis is back; consumers re-register and reading resumes (the poll and the 'ready' event).
//   A read whose reply the dropped connection lost left entries in this instance's PEL that
//   it does not know of: after the reconnect they are found (XPENDING) and given back.
// - Graceful stop: the sessions' unacknowledged messages are given back as they close, then
//   the instance reaps itself (whatever it still owns goes back) before it leaves.

import type { Logger } from 'pino';
import { Message, expiresAtMsOf } from '../broker/message';
import type { QueueBackend, QueueRefusal, QueueStat } from '../broker/queue-backend';
import { messagesOf } from '../broker/queue';
import type { Subscription } from '../broker/subscription';
import { decodeEnvelope, encodeEnvelope } from './envelope';
import type { RedisKeys } from './keys';
import { LuaScript } from './lua';
import type { RedisConnection } from './redis-client';

export const QUEUE_GROUP = 'stompd';
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

const ADMIT_LUA = `
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 1 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1`;

// KEYS: stream, counts. ARGV: maxStored, payload, group. Returns {dropped, created}.
// MAX_QUEUE_MESSAGES bounds what is stored and not yet delivered (the entries after the
// group's last-delivered id), as in embedded mode: delivered, unacknowledged entries (the
// group's pending list) are never trimmed away; past the bound the oldest undelivered go.
const PUBLISH_LUA = `
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[3], '0', 'MKSTREAM')
  created = 1
end
redis.call('XADD', KEYS[1], '*', 'm', ARGV[2])
local pending = tonumber(redis.call('XPENDING', KEYS[1], ARGV[3])[1])
local excess = redis.call('XLEN', KEYS[1]) - pending - tonumber(ARGV[1])
local dropped = 0
if excess > 0 then
  local last = '0-0'
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local name, lastId
    for i = 1, #group, 2 do
      if group[i] == 'name' then name = group[i + 1] elseif group[i] == 'last-delivered-id' then lastId = group[i + 1] end
    end
    if name == ARGV[3] then last = lastId end
  end
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', excess)) do
    dropped = dropped + redis.call('XDEL', KEYS[1], entry[1])
  end
end
if dropped > 0 then redis.call('HINCRBY', KEYS[2], 'dropped', dropped) end
return {dropped, created}`;

// KEYS: stream, consumers, redeliver, counts. ARGV: group, instance, count.
// count > 0: register (and make sure the group exists). 0: unregister, and forget the queue
// when nothing is left of it anywhere (returns 1: the caller removes it from `queues`).
const CONSUMERS_LUA = `
if tonumber(ARGV[3]) > 0 then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  if redis.call('EXISTS', KEYS[1]) == 0 then
    redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
  else
    redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0')
  end
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[2])
if redis.call('XLEN', KEYS[1]) == 0 and redis.call('HLEN', KEYS[2]) == 0 and redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
  return 1
end
return 0`;

// KEYS: redeliver, stream, consumers. ARGV: group, me, count, nowMs, retakeOwnMs.
// Given-back entries first (claimed), then new ones (XREADGROUP, never blocking): one round
// trip per read. Returns {id, fields, wasDelivered} per entry.
const TAKE_LUA = `
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  return {}
end
local others = 0
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  if all[i] ~= ARGV[2] and tonumber(all[i + 1]) > 0 then others = others + 1 end
end
local want = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
local out = {}
for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, 999)) do
  if #out >= want then break end
  local id, from, at, delivered = string.match(e, '^([^|]+)|(.+)|(%d+)|([01])$')
  if id == nil then
    redis.call('LREM', KEYS[1], 1, e)
  elseif from ~= ARGV[2] or others == 0 or now - tonumber(at) >= tonumber(ARGV[5]) then
    redis.call('LREM', KEYS[1], 1, e)
    local p = redis.pcall('XPENDING', KEYS[2], ARGV[1], id, id, 1)
    if type(p) == 'table' and #p == 1 and p[1][2] == from then
      local claimed = redis.call('XCLAIM', KEYS[2], ARGV[1], ARGV[2], 0, id)
      if #claimed == 1 and claimed[1] then table.insert(out, {claimed[1][1], claimed[1][2], delivered}) end
    end
  end
end
if #out < want then
  local read = redis.pcall('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want - #out, 'STREAMS', KEYS[2], '>')
  if type(read) == 'table' and read[1] then
    for _, entry in ipairs(read[1][2]) do table.insert(out, {entry[1], entry[2], '0'}) end
  end
end
return out`;

type Reply = [Buffer, Buffer[], Buffer?][];

interface QueueScripts {
  stompdQueueAdmit(queues: string, name: string, maxQueues: number): Promise<number>;
  stompdQueuePublish(stream: string, counts: string, maxLen: number, payload: Buffer, group: string): Promise<[number, number]>;
  stompdQueueConsumers(stream: string, consumers: string, redeliver: string, counts: string, group: string, instanceId: string, count: number): Promise<number>;
  stompdQueueTakeBuffer(redeliver: string, stream: string, consumers: string, group: string, instanceId: string, count: number, nowMs: number, retakeOwnMs: number): Promise<Reply>;
}

/** A message read from a stream: it knows its entry. */
class StreamMessage extends Message {
  entryId = '';
}

/** One queue as this instance sees it: its local consumers and what it read for them. */
interface LocalQueue {
  readonly name: string;
  readonly consumers: Subscription[];
  nextConsumer: number;
  /** Read (in this instance's PEL), not handed to a consumer yet. */
  ready: StreamMessage[];
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
  private readonly redis: RedisConnection & QueueScripts;
  private readonly local = new Map<string, LocalQueue>();
  private readonly admitted = new Map<string, number>();
  /** Waiting to be sent (batched per event-loop turn), or sent again once Redis is back. */
  private toAck = new Map<string, string[]>();
  private toGiveBack = new Map<string, string[]>();
  private toExpire = new Map<string, number>();
  private toWake = new Set<string>();
  private toRegister = new Set<string>();
  private isFlushScheduled = false;
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly ackScript: LuaScript;
  private readonly reapScript: LuaScript;
  private pollTimer: NodeJS.Timeout | undefined;
  private isStopping = false;

  constructor(options: RedisQueuesOptions) {
    this.options = options;
    const redis = options.redis;
    if (!('stompdQueueAdmit' in redis)) {
      redis.defineCommand('stompdQueueAdmit', { numberOfKeys: 1, lua: ADMIT_LUA });
      redis.defineCommand('stompdQueuePublish', { numberOfKeys: 2, lua: PUBLISH_LUA });
      redis.defineCommand('stompdQueueConsumers', { numberOfKeys: 4, lua: CONSUMERS_LUA });
      redis.defineCommand('stompdQueueTake', { numberOfKeys: 3, lua: TAKE_LUA });
    }
    this.redis = redis as RedisConnection & QueueScripts;
    this.ackScript = new LuaScript(redis, 'queue-ack', [1]);
    this.reapScript = new LuaScript(redis, 'queue-reap', [4]);
    redis.on('ready', () => this.onRedisReady());
    this.pollTimer = setInterval(() => {
      this.reclaimLeftQueues();
      for (const queue of this.local.values()) this.pump(queue);
      this.scheduleFlush();
    }, POLL_MS);
    this.pollTimer.unref();
  }

  private get isUp(): boolean {
    return this.redis.status === 'ready' && !this.isStopping && this.options.isMember?.() !== false;
  }

  // --- Publishing ---

  async admit(destinations: readonly string[]): Promise<QueueRefusal | undefined> {
    const now = Date.now();
    for (const name of destinations) {
      if ((this.admitted.get(name) ?? 0) > now) continue;
      if (!this.isUp) return this.unavailable();
      let isAdmitted: number;
      try {
        isAdmitted = await this.redis.stompdQueueAdmit(this.options.keys.queues, name, this.options.maxQueues);
      } catch {
        return this.unavailable();
      }
      if (isAdmitted !== 1) return { code: 'QUEUE_LIMIT', message: `the server holds ${this.options.maxQueues} queues, its limit: no new queue now` };
      this.admitted.set(name, Date.now() + ADMIT_CACHE_MS);
    }
    return undefined;
  }

  admitSubscription(destination: string): Promise<QueueRefusal | undefined> {
    return this.admit([destination]);
  }

  async publish(message: Message): Promise<QueueRefusal | undefined> {
    if (!this.isUp) return this.unavailable();
    const { keys, instanceId, maxQueueMessages } = this.options;
    const name = message.routeKey;
    const payload = encodeEnvelope({ origin: instanceId, messageId: message.id, destination: message.destination, routeKey: name, headers: message.headers, body: message.body });
    let created: number;
    try {
      [, created] = await this.redis.stompdQueuePublish(keys.queue(name), keys.queueCounts(name), maxQueueMessages, payload, QUEUE_GROUP);
    } catch {
      return this.unavailable();
    }
    // The queue was forgotten between the admit and the XADD: list it again.
    if (created === 1) this.track(this.redis.sadd(keys.queues, name));
    this.counts.published++;
    this.wake(name);
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
    subscription.keepsMessages = true;
    const name = subscription.routeKey;
    let queue = this.local.get(name);
    if (queue === undefined) {
      queue = { name, consumers: [], nextConsumer: 0, ready: [], isReading: false, readAgain: false, registeredCount: 0, needsReclaim: false };
      this.local.set(name, queue);
      const wakeQueue = queue;
      this.options.signals.listen(this.options.keys.queueWakeChannel(name), () => this.pump(wakeQueue));
      this.track(this.redis.sadd(this.options.keys.instanceQueues(this.options.instanceId), name));
    }
    queue.consumers.push(subscription);
    this.register(queue);
    this.pump(queue);
  }

  unsubscribe(subscription: Subscription): void {
    const queue = this.local.get(subscription.routeKey);
    if (queue === undefined) return;
    const index = queue.consumers.indexOf(subscription);
    if (index === -1) return;
    queue.consumers.splice(index, 1);
    if (queue.nextConsumer > index) queue.nextConsumer--;
    const unacked = messagesOf(subscription.takeAllPending()) as StreamMessage[];
    this.redeliver(queue, unacked, undefined);
    if (queue.consumers.length === 0) {
      // Read but never shown: back for the others, not marked redelivered.
      this.giveBack(queue.name, queue.ready, false);
      queue.ready = [];
      this.local.delete(queue.name);
      this.options.signals.unlisten(this.options.keys.queueWakeChannel(queue.name));
    }
    this.register(queue);
  }

  acknowledged(subscription: Subscription, messages: readonly Message[]): void {
    this.settle(subscription.routeKey, messages as readonly StreamMessage[]);
    const queue = this.local.get(subscription.routeKey);
    if (queue !== undefined) this.pump(queue); // room under the prefetch limit
  }

  nacked(subscription: Subscription, messages: readonly Message[]): void {
    const queue = this.local.get(subscription.routeKey);
    if (queue === undefined) return;
    this.redeliver(queue, messages as readonly StreamMessage[], subscription);
    this.pump(queue);
  }

  resume(subscription: Subscription): void {
    const queue = this.local.get(subscription.routeKey);
    if (queue !== undefined) this.pump(queue);
  }

  /**
   * Tell Redis how many consumers this instance has on `queue` (forgetting the queue when
   * nothing is left of it). Sent with the next flush, after the acks and give-backs queued
   * before it: a consumer that acks its last message and leaves lets the queue be forgotten.
   */
  private register(queue: LocalQueue): void {
    if (queue.consumers.length === queue.registeredCount) return;
    this.toRegister.add(queue.name);
    this.scheduleFlush();
  }

  private sendRegistration(name: string): void {
    const { keys, instanceId } = this.options;
    const queue = this.local.get(name);
    const count = queue?.consumers.length ?? 0;
    if (queue !== undefined) queue.registeredCount = count;
    const done = this.redis
      .stompdQueueConsumers(keys.queue(name), keys.queueConsumers(name), keys.queueRedeliver(name), keys.queueCounts(name), QUEUE_GROUP, instanceId, count)
      .then(async (forgotten) => {
        if (queue !== undefined && this.local.get(name) === queue) this.pump(queue); // the group exists now
        if (forgotten !== 1) return;
        this.admitted.delete(name);
        // Subscribed again meanwhile: its registration (queued after this one) re-creates the
        // queue, which must stay listed, here (for the reaper) and in `queues`.
        if (this.local.has(name)) return;
        await this.redis.srem(keys.queues, name);
        await this.redis.srem(keys.instanceQueues(instanceId), name);
      })
      .catch(() => {
        if (queue !== undefined) queue.registeredCount = -1;
        this.toRegister.add(name); // told again when Redis is back
      });
    this.track(done);
  }

  // --- Reading and delivering ---

  /** Read and hand out what local consumers have room for; one read at a time per queue. */
  private pump(queue: LocalQueue): void {
    if (queue.isReading) {
      queue.readAgain = true;
      return;
    }
    this.drainReady(queue);
    if (!this.isUp || this.credit(queue) <= queue.ready.length) return;
    queue.isReading = true;
    let hasFailed = false;
    this.track(
      this.read(queue)
        .catch((err: unknown) => {
          hasFailed = true;
          this.options.logger.debug({ err, queue: queue.name }, 'queue read failed; retried on the next poll');
        })
        .finally(() => {
          queue.isReading = false;
          if (this.local.get(queue.name) !== queue && queue.ready.length > 0) {
            // The last consumer left while the read was under way.
            this.giveBack(queue.name, queue.ready, false);
            queue.ready = [];
          }
          // A read that failed may have run in Redis all the same (a reply that timed out on a
          // connection that stayed up): what it took is in this instance's pending entries,
          // known to nobody. The next read first gives back what is held there untracked.
          if (hasFailed) this.reclaimBeforeNextRead(queue.name);
        }),
    );
  }

  /** Queues whose entries this instance may hold without knowing, and that have no local consumers now. */
  private readonly toReclaim = new Set<string>();

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
      if (this.local.has(name)) {
        this.local.get(name)!.needsReclaim = true;
        continue;
      }
      this.track(this.reclaimUntracked(name, undefined).catch(() => this.toReclaim.add(name)));
    }
  }

  private async read(queue: LocalQueue): Promise<void> {
    const { keys, instanceId } = this.options;
    if (queue.needsReclaim) {
      queue.needsReclaim = false; // while this read runs no other can: what is not tracked now is lost
      await this.reclaimUntracked(queue.name, queue);
    }
    for (;;) {
      queue.readAgain = false;
      const want = Math.min(MAX_READ, this.credit(queue) - queue.ready.length);
      if (want <= 0 || !this.isUp || this.local.get(queue.name) !== queue) return;
      let got = 0;
      const taken = await this.redis.stompdQueueTakeBuffer(keys.queueRedeliver(queue.name), keys.queue(queue.name), keys.queueConsumers(queue.name), QUEUE_GROUP, instanceId, want, Date.now(), RETAKE_OWN_MS);
      // A give-back of this instance's, listed twice (a reap's and its own, or a reclaim's),
      // comes back while this instance still holds the entry: it is not a second message.
      const held = taken.length > 0 ? this.trackedEntries(queue.name, queue) : undefined;
      for (const [id, fields, delivered] of taken) {
        if (held?.has(id.toString()) === true) continue;
        held?.add(id.toString());
        const message = this.decode(queue.name, id, fields);
        if (message === undefined) continue;
        message.isRedelivered = delivered?.toString() !== '0';
        if (message.isRedelivered) this.counts.redelivered++;
        queue.ready.push(message);
        got++;
      }
      this.drainReady(queue);
      if (got === 0 && !queue.readAgain) return;
    }
  }

  private decode(name: string, id: Buffer, fields: Buffer[]): StreamMessage | undefined {
    const entryId = id.toString();
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
      this.addTo(this.toAck, name, [entryId]);
      this.scheduleFlush();
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

  private drainReady(queue: LocalQueue): void {
    let taken = 0;
    const now = Date.now();
    while (taken < queue.ready.length) {
      const message = queue.ready[taken]!;
      if (message.expiresAtMs !== undefined && message.expiresAtMs <= now) {
        this.expire(queue.name, message);
      } else if (!this.dispatch(queue, message, undefined)) {
        break;
      }
      taken++;
    }
    if (taken > 0) queue.ready = queue.ready.slice(taken);
  }

  /** Round robin over local consumers that can take one, other than `except`. */
  private dispatch(queue: LocalQueue, message: StreamMessage, except: Subscription | undefined): boolean {
    const consumers = queue.consumers;
    for (let tries = 0; tries < consumers.length; tries++) {
      if (queue.nextConsumer >= consumers.length) queue.nextConsumer = 0;
      const consumer = consumers[queue.nextConsumer++]!;
      if (consumer === except || !consumer.canTakeMore) continue;
      // Auto ack: written to the socket is acknowledged.
      if (consumer.deliver(message) === undefined) this.settle(queue.name, [message]);
      return true;
    }
    return false;
  }

  /** NACKed or orphaned messages: another local consumer first, then any instance's. */
  private redeliver(queue: LocalQueue, messages: readonly StreamMessage[], from: Subscription | undefined): void {
    const rest: StreamMessage[] = [];
    const now = Date.now();
    for (const message of messages) {
      message.isRedelivered = true;
      if (message.expiresAtMs !== undefined && message.expiresAtMs <= now) this.expire(queue.name, message); // never delivered once past
      else if (!this.dispatch(queue, message, from)) rest.push(message);
    }
    this.giveBack(queue.name, rest, true);
  }

  private expire(name: string, message: StreamMessage): void {
    this.counts.expired++;
    this.toExpire.set(name, (this.toExpire.get(name) ?? 0) + 1);
    this.settle(name, [message]);
  }

  // --- Writes batched per event-loop turn, kept while Redis is away ---

  private settle(name: string, messages: readonly StreamMessage[]): void {
    if (messages.length === 0) return;
    this.addTo(
      this.toAck,
      name,
      messages.map((m) => m.entryId),
    );
    this.scheduleFlush();
  }

  /**
   * `wasDelivered`: a client saw them. A message read but never shown keeps the mark it came
   * with: one that had been delivered before (it came back redelivered) goes on redelivered.
   */
  private giveBack(name: string, messages: readonly StreamMessage[], wasDelivered: boolean): void {
    this.giveBackEntries(name, messages.map((m) => [m.entryId, wasDelivered || m.isRedelivered]));
  }

  private giveBackIds(name: string, entryIds: readonly string[], wasDelivered: boolean): void {
    this.giveBackEntries(name, entryIds.map((id) => [id, wasDelivered]));
  }

  /** Queue `<entryId>|<me>|<atMs>|<wasDelivered 0/1>` for the redeliver list, sent with the next flush. */
  private giveBackEntries(name: string, entries: readonly (readonly [string, boolean])[]): void {
    if (entries.length === 0) return;
    const at = Date.now();
    this.addTo(this.toGiveBack, name, entries.map(([id, wasDelivered]) => `${id}|${this.options.instanceId}|${at}|${wasDelivered ? '1' : '0'}`));
    this.scheduleFlush();
  }

  /**
   * Entries in this instance's PEL that it does not hold (not read-ahead, not delivered and
   * unacknowledged, not waiting to be acked or given back): a read whose reply a dropped
   * connection lost. Given back (marked redelivered: they may have been seen). Runs only when
   * no read of the queue is under way.
   */
  private async reclaimUntracked(name: string, queue: LocalQueue | undefined): Promise<void> {
    const { keys, instanceId, logger } = this.options;
    const pending = (await this.redis.xpending(keys.queue(name), QUEUE_GROUP, '-', '+', 100000, instanceId).catch((err: unknown) => {
      if (err instanceof Error && /NOGROUP|no such key/i.test(err.message)) return []; // the queue is gone: nothing held
      throw err;
    })) as [string, ...unknown[]][];
    if (pending.length === 0) return;
    const tracked = this.trackedEntries(name, queue);
    const lost = pending.map((p) => p[0]).filter((id) => !tracked.has(id));
    if (lost.length === 0) return;
    logger.info({ queue: name, messages: lost.length }, 'queue entries this instance held without knowing (a read lost with its connection): given back');
    this.giveBackIds(name, lost, true);
  }

  /** The entries of `name` this instance holds: read ahead, delivered and unacknowledged, being acked or given back. */
  private trackedEntries(name: string, queue: LocalQueue | undefined): Set<string> {
    const tracked = new Set<string>();
    for (const message of queue?.ready ?? []) tracked.add(message.entryId);
    for (const consumer of queue?.consumers ?? []) {
      for (const delivery of consumer.pending.values()) if (delivery.message instanceof StreamMessage) tracked.add(delivery.message.entryId);
    }
    for (const id of this.toAck.get(name) ?? []) tracked.add(id);
    for (const entry of this.toGiveBack.get(name) ?? []) tracked.add(entry.split('|')[0]!);
    return tracked;
  }

  private wake(name: string): void {
    this.toWake.add(name);
    this.scheduleFlush();
  }

  private addTo(map: Map<string, string[]>, name: string, items: string[]): void {
    const list = map.get(name);
    if (list === undefined) map.set(name, items);
    else for (const item of items) list.push(item);
  }

  private scheduleFlush(): void {
    if (this.isFlushScheduled) return;
    this.isFlushScheduled = true;
    setImmediate(() => {
      this.isFlushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.redis.status !== 'ready' || this.options.isMember?.() === false) return; // kept for when Redis (and membership) is back
    const { keys, signals } = this.options;
    const acks = this.toAck;
    const giveBacks = this.toGiveBack;
    const expired = this.toExpire;
    this.toAck = new Map();
    this.toGiveBack = new Map();
    this.toExpire = new Map();
    for (const [name, ids] of acks) {
      const stream = keys.queue(name);
      this.track(
        this.ackScript.run([stream], [QUEUE_GROUP, this.options.instanceId, ...ids]).catch(() => {
          this.addTo(this.toAck, name, ids);
        }),
      );
    }
    for (const [name, entries] of giveBacks) {
      this.track(
        this.redis.rpush(keys.queueRedeliver(name), ...entries).then(
          () => {
            this.wake(name);
            const queue = this.local.get(name);
            if (queue !== undefined) this.pump(queue);
          },
          () => this.addTo(this.toGiveBack, name, entries),
        ),
      );
    }
    const registrations = this.toRegister;
    this.toRegister = new Set();
    for (const name of registrations) this.sendRegistration(name);
    for (const [name, count] of expired) this.track(this.redis.hincrby(keys.queueCounts(name), 'expired', count).catch(() => undefined));
    for (const name of this.toWake) signals.signal(keys.queueWakeChannel(name));
    this.toWake.clear();
  }

  private track<T>(promise: Promise<T>): void {
    const tracked = promise.catch(() => undefined).finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  /** Redis is back (or restarted, maybe empty): register the consumers again, send what waited, read. */
  /** Call once membership holds again after a reconnect: what 'ready' deferred runs now. */
  resumeAsMember(): void {
    if (this.isReadyDeferred) this.onRedisReady();
  }
  private isReadyDeferred = false;

  private onRedisReady(): void {
    if (this.isStopping) return;
    if (this.options.isMember?.() === false) {
      this.isReadyDeferred = true; // not before "was I reaped?" is answered
      return;
    }
    this.isReadyDeferred = false;
    this.admitted.clear();
    for (const queue of this.local.values()) {
      queue.registeredCount = -1;
      this.track(this.redis.sadd(this.options.keys.queues, queue.name));
      this.track(this.redis.sadd(this.options.keys.instanceQueues(this.options.instanceId), queue.name));
      queue.needsReclaim = true;
      this.register(queue);
      this.pump(queue);
    }
    // Queues this instance no longer consumes: nothing of theirs is tracked here any more.
    this.track(
      this.redis.smembers(this.options.keys.instanceQueues(this.options.instanceId)).then(async (names) => {
        for (const name of names) if (!this.local.has(name)) await this.reclaimUntracked(name, undefined).catch(() => this.toReclaim.add(name));
      }),
    );
    this.scheduleFlush();
  }

  // --- Instance death ---

  /**
   * `deadId` was found dead (called by the one survivor reaping it): everything in its PEL
   * goes on the redeliver lists, for the survivors. Throws when Redis fails half-way: the
   * reap is then retried, and a list entry given twice is delivered once (TAKE checks owners).
   */
  async reapInstance(deadId: string): Promise<number> {
    const { keys, logger } = this.options;
    const names = await this.redis.smembers(keys.instanceQueues(deadId));
    let given = 0;
    for (const name of names) {
      let start = '-';
      do {
        const [count, next, forgotten] = (await this.reapScript.run(
          [keys.queue(name), keys.queueRedeliver(name), keys.queueConsumers(name), keys.queueCounts(name)],
          [QUEUE_GROUP, deadId, Date.now(), start, REAP_BATCH],
        )) as [number, string, number];
        given += count;
        start = next;
        if (forgotten === 1) await this.redis.srem(keys.queues, name);
      } while (start !== '');
      this.wake(name);
    }
    await this.redis.del(keys.instanceQueues(deadId));
    if (given > 0 && deadId !== this.options.instanceId) logger.info({ deadInstance: deadId, messages: given }, 'unacknowledged queue messages of a dead instance given back for redelivery');
    return given;
  }

  // --- Visibility ---

  async queueStats(): Promise<QueueStat[]> {
    const { keys } = this.options;
    const names = await this.redis.smembers(keys.queues);
    const now = Date.now();
    return Promise.all(
      names.map(async (name) => {
        const stream = keys.queue(name);
        const [length, pending, consumers, oldest, counts] = await Promise.all([
          this.redis.xlen(stream),
          (this.redis.xpending(stream, QUEUE_GROUP) as Promise<[number, ...unknown[]]>).then((r) => Number(r[0]), () => 0),
          this.redis.hvals(keys.queueConsumers(name)),
          this.redis.xrange(stream, '-', '+', 'COUNT', 1),
          this.redis.hmget(keys.queueCounts(name), 'dropped', 'expired'),
        ]);
        const oldestAtMs = oldest[0] === undefined ? undefined : Number(oldest[0][0].split('-')[0]);
        return {
          name,
          depth: Math.max(0, length - pending),
          unacked: pending,
          consumers: consumers.reduce((sum, n) => sum + Number(n), 0),
          oldestAgeMs: oldestAtMs === undefined ? 0 : Math.max(0, now - oldestAtMs),
          dropped: Number(counts[0] ?? 0),
          expired: Number(counts[1] ?? 0),
        };
      }),
    );
  }

  /**
   * Leave: the sessions were closed first (their unacknowledged messages given back); send
   * what waits, stop reading, stop being listed as a consumer of anything.
   */
  async stop(timeoutMs: number): Promise<void> {
    this.flush();
    const deadline = Date.now() + timeoutMs;
    while (this.inFlight.size > 0 && Date.now() < deadline) {
      await Promise.race([Promise.all([...this.inFlight]), new Promise((resolve) => setTimeout(resolve, deadline - Date.now()))]);
      this.flush();
    }
    this.isStopping = true;
    clearInterval(this.pollTimer);
    this.pollTimer = undefined;
    if (this.redis.status !== 'ready') return; // the reaper gives back what this instance held
    // The sessions are closed: whatever this instance still owns (a read that raced the stop)
    // goes back too, as if it had died; what was given back already is deduplicated by TAKE.
    try {
      await this.reapInstance(this.options.instanceId);
      this.flush(); // the wake-ups
    } catch (err) {
      this.options.logger.warn({ err }, 'could not give back the queue entries this instance still held at stop');
    }
  }
}
