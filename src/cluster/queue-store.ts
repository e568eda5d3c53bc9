// Queues' Redis operations: one stream per queue with one consumer group, and the keys
// beside it (consumers per instance, the redeliver list, counts), all under the queue's hash
// tag so each script stays in one slot on a Cluster. Stateless: every method is one bounded
// piece of Redis work (a script from lua/, or a command), for redis-queues.ts (dispatch) and
// queue-outbox.ts (batched writes) to call. Nothing here retries or remembers.

import type { QueueStat } from '../broker/queue-backend';
import type { RedisKeys } from './keys';
import { InstanceClaim } from './instance-claim';
import { LuaScript } from './lua';
import { encodeRedeliverEntry } from './redeliver-entry';
import type { RedeliverEntry } from './redeliver-entry';
import { isCluster } from './redis-client';
import type { RedisConnection } from './redis-client';

export const QUEUE_GROUP = 'stompd';
/** Entries acknowledged per script call. */
const ACK_BATCH = 500;
/** Redeliver list entries pushed per command. */
const GIVE_BACK_BATCH = 1000;
/** Pending entries listed per XPENDING. */
const PENDING_PAGE = 1000;
/** Redeliver list entries a take looks at, at most. */
const TAKE_SCAN_LIMIT = 1000;
/** Undelivered entries a publish drops at most (past MAX_QUEUE_MESSAGES). */
const PUBLISH_DROP_LIMIT = 100;

/** An entry a take returned: its id, its stream fields, whether a client saw it before. */
export interface TakenEntry {
  entryId: string;
  fields: Buffer[];
  wasDelivered: boolean;
}

/** The liveness key and the generation it must hold for this instance's writes (membership.ts). */
export type QueueFence = () => { key: string; generation: string } | undefined;

/** A write refused because this instance's generation is not the live one (it was reaped, or has not joined again yet). */
export class FencedError extends Error {
  constructor() {
    super("fenced: this instance's generation is not the live one (it joins again first)");
    this.name = 'FencedError';
  }
}

export class RedisQueueStore {
  private readonly redis: RedisConnection;
  private readonly keys: RedisKeys;
  /**
   * On a single Redis the scripts that write for this instance (a consumer registration, a
   * take) check its generation; a Cluster cannot (the liveness key is in another slot).
   */
  private readonly isFenced: boolean;
  private readonly fence: QueueFence;
  private readonly admitScript: LuaScript;
  private readonly publishScript: LuaScript;
  private readonly consumersScript: LuaScript;
  private readonly takeScript: LuaScript;
  private readonly ackScript: LuaScript;
  private readonly reapScript: LuaScript;
  private readonly claim: InstanceClaim;

  constructor(redis: RedisConnection, keys: RedisKeys, fence: QueueFence = () => undefined) {
    this.redis = redis;
    this.keys = keys;
    this.isFenced = !isCluster(redis);
    this.fence = fence;
    this.admitScript = new LuaScript(redis, 'queue-admit', [1]);
    this.publishScript = new LuaScript(redis, 'queue-publish', [2]);
    this.consumersScript = new LuaScript(redis, 'queue-consumers', [this.isFenced ? 6 : 4]);
    this.takeScript = new LuaScript(redis, 'queue-take', [this.isFenced ? 4 : 3]);
    this.ackScript = new LuaScript(redis, 'queue-ack', [1]);
    this.claim = new InstanceClaim(redis);
    this.reapScript = new LuaScript(redis, 'queue-reap', [4]);
  }

  /** Whether `name` may exist (MAX_QUEUES); a new one is listed. */
  async admit(name: string, maxQueues: number): Promise<boolean> {
    return (await this.admitScript.run([this.keys.queues], [name, maxQueues])) === 1;
  }

  /**
   * Store `payload` in the queue's stream, past `maxStored` undelivered dropping the oldest.
   * True when the stream was created: the queue was forgotten since it was admitted, and the
   * caller lists it again.
   */
  async publish(name: string, payload: Buffer, maxStored: number): Promise<boolean> {
    const [, created] = (await this.publishScript.run([this.keys.queue(name), this.keys.queueCounts(name)], [maxStored, payload, QUEUE_GROUP, PUBLISH_DROP_LIMIT])) as [number, number];
    return created === 1;
  }

  /**
   * `instanceId` has `count` consumers on `name`; true when 0 left the queue with nothing and
   * it was forgotten. On a single Redis a registration also lists the queue for the reaper
   * (listConsumed is for a Cluster), and a fenced generation's is refused (rejects).
   */
  async setConsumers(name: string, instanceId: string, count: number): Promise<boolean> {
    const keys = this.keys;
    const queueKeys = [keys.queue(name), keys.queueConsumers(name), keys.queueRedeliver(name), keys.queueCounts(name)];
    const args: (string | number)[] = [QUEUE_GROUP, instanceId, count];
    if (this.isFenced) {
      const fence = this.fence();
      queueKeys.push(keys.instanceQueues(instanceId), fence?.key ?? keys.instance(instanceId));
      args.push(fence?.generation ?? '', name);
    }
    const reply = await this.consumersScript.run(queueKeys, args);
    if (reply === -1) throw new FencedError();
    return reply === 1;
  }

  /** Up to `count` entries for `instanceId`: given back ones first, then new ones. Rejects when fenced (nothing taken). */
  async take(name: string, instanceId: string, count: number, nowMs: number, retakeOwnMs: number): Promise<TakenEntry[]> {
    const keys = this.keys;
    const queueKeys = [keys.queueRedeliver(name), keys.queue(name), keys.queueConsumers(name)];
    const args: (string | number)[] = [QUEUE_GROUP, instanceId, count, nowMs, retakeOwnMs, TAKE_SCAN_LIMIT];
    if (this.isFenced) {
      const fence = this.fence();
      queueKeys.push(fence?.key ?? keys.instance(instanceId));
      args.push(fence?.generation ?? '');
    }
    const reply = (await this.takeScript.runForBuffers(queueKeys, args)) as [Buffer, Buffer[], Buffer][] | -1;
    if (reply === -1) throw new FencedError();
    return reply.map(([id, fields, wasDelivered]) => ({ entryId: id.toString(), fields, wasDelivered: wasDelivered.toString() !== '0' }));
  }

  /** Acknowledge and delete the entries `instanceId` still holds (one held by another consumer now stays). */
  async acknowledge(name: string, instanceId: string, entryIds: readonly string[]): Promise<void> {
    // Every batch sent at once (pipelined, in order): what follows in the same turn (a
    // consumer count of 0 forgetting the queue) runs after all of them.
    await Promise.all(batchesOf(entryIds, ACK_BATCH).map((ids) => this.ackScript.run([this.keys.queue(name)], [QUEUE_GROUP, instanceId, ...ids])));
  }

  /** Put entries on the redeliver list, for any instance to claim. */
  async giveBack(name: string, entries: readonly RedeliverEntry[]): Promise<void> {
    await Promise.all(batchesOf(entries, GIVE_BACK_BATCH).map((batch) => this.redis.rpush(this.keys.queueRedeliver(name), ...batch.map(encodeRedeliverEntry))));
  }

  async countExpired(name: string, count: number): Promise<void> {
    await this.redis.hincrby(this.keys.queueCounts(name), 'expired', count);
  }

  /** Ids of the entries `instanceId` holds in `name`'s pending list, a page at a time. */
  async pendingIds(name: string, instanceId: string): Promise<string[]> {
    const ids: string[] = [];
    let start = '-';
    for (;;) {
      const page = (await this.redis.xpending(this.keys.queue(name), QUEUE_GROUP, start, '+', PENDING_PAGE, instanceId)) as [string, ...unknown[]][];
      for (const [id] of page) ids.push(id);
      if (page.length < PENDING_PAGE) return ids;
      start = `(${page[page.length - 1]![0]}`;
    }
  }

  /**
   * Give back a batch of what `deadId` held in `name` (queue-reap.lua). Returns how many,
   * the start of the next batch ('' when done), and whether the queue was forgotten.
   */
  async reapBatch(name: string, deadId: string, nowMs: number, start: string, batch: number): Promise<{ given: number; next: string; isForgotten: boolean }> {
    const keys = this.keys;
    const [given, next, forgotten] = (await this.reapScript.run([keys.queue(name), keys.queueRedeliver(name), keys.queueConsumers(name), keys.queueCounts(name)], [QUEUE_GROUP, deadId, nowMs, start, batch])) as [
      number,
      string,
      number,
    ];
    return { given, next, isForgotten: forgotten === 1 };
  }

  // --- Lists of queues: every queue (MAX_QUEUES), and each instance's (for its reaper) ---

  queueNames(): Promise<string[]> {
    return this.redis.smembers(this.keys.queues);
  }

  async listQueue(name: string): Promise<void> {
    await this.redis.sadd(this.keys.queues, name);
  }

  async unlistQueue(name: string): Promise<void> {
    await this.redis.srem(this.keys.queues, name);
  }

  consumedBy(instanceId: string): Promise<string[]> {
    return this.redis.smembers(this.keys.instanceQueues(instanceId));
  }

  /** List `name` as consumed by `instanceId`, for its reaper: on a Cluster (a single Redis lists it with the fenced registration). */
  async listConsumed(instanceId: string, name: string): Promise<void> {
    if (this.isFenced) return;
    // On a Cluster the listing is the fence: claimed in the instance's own slot with its generation checked.
    if ((await this.claim.claim(this.keys.instanceQueues(instanceId), this.keys.instance(instanceId), this.fence(), name)) === -1) throw new FencedError();
  }

  async unlistConsumed(instanceId: string, name: string): Promise<void> {
    await this.redis.srem(this.keys.instanceQueues(instanceId), name);
  }

  async forgetConsumed(instanceId: string): Promise<void> {
    await this.redis.del(this.keys.instanceQueues(instanceId));
  }

  /** One queue as every instance sees it. */
  async stat(name: string, nowMs: number): Promise<QueueStat> {
    const stream = this.keys.queue(name);
    const [length, pending, consumers, oldest, counts] = await Promise.all([
      this.redis.xlen(stream),
      (this.redis.xpending(stream, QUEUE_GROUP) as Promise<[number, ...unknown[]]>).then(
        (r) => Number(r[0]),
        () => 0,
      ),
      this.redis.hvals(this.keys.queueConsumers(name)),
      this.redis.xrange(stream, '-', '+', 'COUNT', 1),
      this.redis.hmget(this.keys.queueCounts(name), 'dropped', 'expired'),
    ]);
    const oldestAtMs = oldest[0] === undefined ? undefined : Number(oldest[0][0].split('-')[0]);
    return {
      name,
      depth: Math.max(0, length - pending),
      unacked: pending,
      consumers: consumers.reduce((sum, n) => sum + Number(n), 0),
      oldestAgeMs: oldestAtMs === undefined ? 0 : Math.max(0, nowMs - oldestAtMs),
      dropped: Number(counts[0] ?? 0),
      expired: Number(counts[1] ?? 0),
    };
  }
}

function batchesOf<T>(items: readonly T[], size: number): T[][] {
  const batches: T[][] = [];
  for (let i = 0; i < items.length; i += size) batches.push(items.slice(i, i + size));
  return batches;
}
