// Session events for the backend kept in Redis, so that an instance's death loses none.
//
// Each instance appends to a stream of its own, `backend:{<instanceId>}:events`, and keeps in
// `backend:{<instanceId>}:open` the sessions it holds that had a CONNECT event (what their
// instance-lost DISCONNECT needs: user, roles, attributes). One deliverer per stream keeps the
// order per session: all of a session's events are in the stream of the instance that held it.
// When an instance dies, one survivor takes its stream over (a claim, SET NX): one script
// appends an instance-lost DISCONNECT for each session still open there, after its last
// events, and empties the open set, so each is appended once; the survivor then delivers the
// stream and deletes it. Streams whose instance is gone without being reaped (a graceful stop
// that could not deliver everything, an adopter that died) are found by a periodic scan.
//
// Events are appended through a local buffer flushed in order (commands fail fast while Redis
// is away): an outage delays them, never reorders them; the buffer and the stream are each
// bounded by BACKEND_MAX_PENDING_EVENTS, oldest dropped and counted.

import type { SessionEvent } from '../backend/contract';
import type { EventOutbox, PendingBatch, SharedOutboxes } from '../backend/event-outbox';
import { AppendSignal } from '../backend/event-outbox';
import type { Logger } from 'pino';
import type { InstanceLossHandler } from './instance-loss';
import type { RedisKeys } from './keys';
import { LuaScript } from './lua';
import type { RedisConnection } from './redis-client';

const CLAIM_MS = 60_000;
const FLUSH_BATCH = 200;
const ORPHAN_SCAN_MS = 10_000;

function streamKey(keys: RedisKeys, instanceId: string): string {
  return `${keys.prefix}backend:{${instanceId}}:events`;
}
function openKey(keys: RedisKeys, instanceId: string): string {
  return `${keys.prefix}backend:{${instanceId}}:open`;
}
function claimKey(keys: RedisKeys, instanceId: string): string {
  return `${keys.prefix}backend:{${instanceId}}:adopter`;
}
/** Set: instances that have an outbox stream (the scan's list). */
function ownersKey(keys: RedisKeys): string {
  return `${keys.prefix}backend:outboxes`;
}

/** user, roles and attributes as a JSON fragment: the adopt script puts it in the event as it is. */
function openInfo(event: SessionEvent): string {
  return `"userId":${JSON.stringify(event.userId)},"roles":${JSON.stringify(event.roles)},"attributes":${JSON.stringify(event.attributes)}`;
}

const EVENT_TYPES: readonly string[] = ['CONNECT', 'DISCONNECT', 'SUBSCRIBE', 'UNSUBSCRIBE'] satisfies SessionEvent['type'][];

/** An event as an instance (or the adopt script) wrote it to a stream, checked like input; undefined when it is not one. */
export function parseStoredEvent(json: string | undefined): SessionEvent | undefined {
  if (json === undefined) return undefined;
  let v: Record<string, unknown>;
  try {
    const value: unknown = JSON.parse(json);
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
    v = value as Record<string, unknown>;
  } catch {
    return undefined;
  }
  const isText = (x: unknown): x is string => typeof x === 'string';
  if (!isText(v.id) || !isText(v.type) || !EVENT_TYPES.includes(v.type) || !isText(v.sessionId) || !isText(v.userId) || !isText(v.instanceId)) return undefined;
  if (!Array.isArray(v.roles) || !v.roles.every(isText) || typeof v.at !== 'number' || !Number.isFinite(v.at)) return undefined;
  if (typeof v.attributes !== 'object' || v.attributes === null || Array.isArray(v.attributes)) return undefined;
  if ((v.destination !== undefined && !isText(v.destination)) || (v.reason !== undefined && !isText(v.reason))) return undefined;
  return v as unknown as SessionEvent;
}

class RedisStreamOutbox implements EventOutbox {
  droppedCount = 0;
  private readonly redis: RedisConnection;
  private readonly stream: string;
  private readonly open: string;
  private readonly maxPending: number;
  private readonly logger: Logger;
  /** Whether CONNECT and DISCONNECT events open and close the session's entry in `open`. */
  private readonly tracksSessions: boolean;
  /** Appended here, not yet in Redis (oldest first). */
  private local: SessionEvent[] = [];
  private isFlushing = false;
  private isFlushScheduled = false;
  private streamLength = 0;
  private readonly signal = new AppendSignal();
  private retryTimer: NodeJS.Timeout | undefined;
  /** Called on every read: an adopter keeps its claim while it delivers. */
  private readonly onRead: (() => Promise<unknown>) | undefined;

  private readonly appendScript: LuaScript;

  constructor(redis: RedisConnection, stream: string, open: string, maxPending: number, logger: Logger, tracksSessions: boolean, onRead?: () => Promise<unknown>) {
    this.redis = redis;
    this.appendScript = new LuaScript(redis, 'outbox-append', [2]);
    this.tracksSessions = tracksSessions;
    this.stream = stream;
    this.open = open;
    this.maxPending = maxPending;
    this.logger = logger;
    this.onRead = onRead;
  }

  append(event: SessionEvent): void {
    this.local.push(event);
    if (this.local.length > this.maxPending) {
      this.local.shift();
      this.droppedCount++;
    }
    if (this.isFlushing || this.isFlushScheduled) return;
    this.isFlushScheduled = true;
    setImmediate(() => {
      this.isFlushScheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.isFlushing || this.local.length === 0) return;
    this.isFlushing = true;
    try {
      while (this.local.length > 0) {
        const batch = this.local.slice(0, FLUSH_BATCH);
        const args: (string | number)[] = [this.maxPending];
        for (const event of batch) args.push(this.tracksSessions ? event.type : '', event.sessionId, JSON.stringify(event), this.tracksSessions && event.type === 'CONNECT' ? openInfo(event) : '');
        const [trimmed, length] = (await this.appendScript.run([this.stream, this.open], args)) as [number, number];
        // Events dropped locally while the batch was out shifted it: remove what was written.
        this.local.splice(0, Math.min(batch.length, this.local.length));
        this.droppedCount += trimmed;
        this.streamLength = length;
        this.signal.notify();
      }
    } catch (err) {
      this.logger.debug({ err }, 'session events not written to Redis yet: retrying');
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => void this.flush(), 500);
      this.retryTimer.unref();
    } finally {
      this.isFlushing = false;
    }
  }

  async peek(max: number): Promise<PendingBatch> {
    await this.onRead?.();
    const entries = (await this.redis.xrange(this.stream, '-', '+', 'COUNT', max)) as [string, string[]][];
    const events: SessionEvent[] = [];
    const ids: string[] = [];
    for (const [id, fields] of entries) {
      ids.push(id);
      const event = parseStoredEvent(fields[fields.indexOf('e') + 1]);
      if (event !== undefined) events.push(event); // else not ours to deliver: removed with the batch
    }
    if (entries.length < max) this.streamLength = entries.length;
    return { events, token: ids };
  }

  async remove(batch: PendingBatch): Promise<void> {
    const ids = batch.token as string[];
    if (ids.length === 0) return;
    await this.redis.xdel(this.stream, ...ids);
    this.streamLength = Math.max(0, this.streamLength - ids.length);
  }

  whenAppended(timeoutMs: number): Promise<void> {
    return this.signal.wait(timeoutMs);
  }

  pendingCount(): number {
    return this.streamLength + this.local.length;
  }

  async stop(): Promise<void> {
    clearTimeout(this.retryTimer);
    await this.flush();
    this.signal.notify();
  }
}

export interface RedisOutboxesOptions {
  redis: RedisConnection;
  keys: RedisKeys;
  instanceId: string;
  logger: Logger;
}

/** The cluster layer's side of the session-event outboxes (backend hooks with Redis). */
export class RedisOutboxes implements SharedOutboxes, InstanceLossHandler {
  readonly isDurable = true;
  /** Set by the backend: take over `deadId`'s outbox (called by the reaper and by the scan). */
  onInstanceGone: ((deadId: string) => Promise<void>) | undefined;
  private readonly options: RedisOutboxesOptions;
  private scanTimer: NodeJS.Timeout | undefined;
  private readonly adoptScript: LuaScript;

  constructor(options: RedisOutboxesOptions) {
    this.options = options;
    this.adoptScript = new LuaScript(options.redis, 'outbox-adopt', [3]);
    // Defined now: an outbox made later must not define its script after an auto-pipeline began.
    new LuaScript(options.redis, 'outbox-append', [2]);
  }

  create(maxPending: number, tracksSessions: boolean): EventOutbox {
    const { redis, keys, instanceId, logger } = this.options;
    redis.sadd(ownersKey(keys), instanceId).catch(() => undefined);
    this.scanTimer = setInterval(() => void this.scanOrphans(), ORPHAN_SCAN_MS);
    this.scanTimer.unref();
    setImmediate(() => void this.scanOrphans());
    return new RedisStreamOutbox(redis, streamKey(keys, instanceId), openKey(keys, instanceId), maxPending, logger, tracksSessions, () => redis.sadd(ownersKey(keys), instanceId));
  }

  /** The reaper took `deadId` over: its outbox goes with it. */
  async onInstanceLost(deadId: string): Promise<void> {
    await this.onInstanceGone?.(deadId).catch((err: unknown) => this.options.logger.warn({ err, deadInstance: deadId }, 'could not take over the session events of a dead instance'));
  }

  async adopt(deadId: string, maxPending: number): Promise<{ outbox: EventOutbox; finish(): Promise<boolean> } | undefined> {
    const { redis, keys, instanceId, logger } = this.options;
    const stream = streamKey(keys, deadId);
    const claim = claimKey(keys, deadId);
    const appended = (await this.adoptScript.run([stream, openKey(keys, deadId), claim], [Date.now(), instanceId, CLAIM_MS, deadId])) as number;
    if (appended < 0) return undefined;
    if (appended > 0) logger.info({ deadInstance: deadId, sessions: appended }, "instance-lost disconnects appended to the dead instance's session events");
    const keepClaim = (): Promise<unknown> => redis.set(claim, instanceId, 'PX', CLAIM_MS);
    const outbox = new RedisStreamOutbox(redis, stream, openKey(keys, deadId), maxPending, logger, false, keepClaim);
    return {
      outbox,
      finish: async () => {
        // Delivered to the end: the dead instance's outbox is gone (nothing appends to it any more).
        await redis.del(stream, claim);
        await redis.srem(ownersKey(keys), deadId);
        return true;
      },
    };
  }

  /** Outboxes whose instance is neither alive nor being delivered by anyone. */
  private async scanOrphans(): Promise<void> {
    const { redis, keys, instanceId } = this.options;
    if (this.onInstanceGone === undefined) return;
    try {
      for (const owner of await redis.smembers(ownersKey(keys))) {
        if (owner === instanceId) continue;
        if ((await redis.exists(keys.instance(owner))) === 1) continue;
        if ((await redis.exists(claimKey(keys, owner))) === 1) continue;
        await this.onInstanceGone(owner);
      }
    } catch (err) {
      this.options.logger.debug({ err }, 'outbox scan failed: trying again later');
    }
  }

  stop(): void {
    clearInterval(this.scanTimer);
  }
}
