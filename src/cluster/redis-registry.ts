// The session registry in Redis, shared by every instance (see keys.ts for the layout).
//
// bind is decided atomically by one Lua script on the user's sorted set `user:{userId}`:
// the script drops holders known to be dead, counts the rest against the limit, and either
// refuses, admits, or evicts the oldest (replace). What the script needs to know of other
// slots (is a holder's instance alive?) is read before it runs and passed in; that is safe
// because an instance id is unique per start, so an instance found dead stays dead.
//
// Order of writes, so that nothing is ever half-registered in a way that outlives a crash:
//   1. `instance:{me}:sessions` gets the id (the reaper's list of what this instance holds),
//   2. the session hash is written (with its TTL),
//   3. the bind script adds the id to `user:{userId}` (the policy decision),
//   4. `sessions:all` and `instance:{me}:users` are updated.
// On a single Redis steps 1–4 are one Lua script (atomic as a whole). On a Cluster each
// step is atomic in its own slot; a crash between steps leaves entries of this instance
// only, which the reaper removes when the instance's liveness key expires. Unregistering
// runs the steps in reverse; whoever deletes the session hash (DEL returns 1) owns the
// disconnect, so racing reapers fire it once.

import { InvalidCursorError, RegistryUnavailableError, decodeCursor, encodeCursor, pageOnlineUsers } from '../registry/registry';
import type { BindPolicy, BindResult, OnlineUsersPage, OnlineUsersQuery, RegistryStats, SessionPage, SessionRecord, SessionRegistry, SubscriptionNote } from '../registry/registry';
import { encodeControl } from './control';
import type { ControlMessage } from './control';
import type { RedisKeys } from './keys';
import { INBOX_TTL_SECONDS } from './membership';
import { LuaScript } from './lua';
import { isCluster } from './redis-client';
import type { RedisConnection } from './redis-client';

/**
 * A single Redis: unregister in one script. KEYS: session hash, sessions:all, instance
 * sessions, instance users. ARGV: sessionId, user prefix. Returns the hash's fields (flat),
 * or an empty list when the session was already gone.
 */
const UNREGISTER_SINGLE_LUA = `
local fields = redis.call('HGETALL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
if #fields == 0 then return fields end
local userId = redis.call('HGET', KEYS[1], 'userId')
redis.call('ZREM', ARGV[2] .. userId .. '}', ARGV[1])
redis.call('DEL', KEYS[1])
if redis.call('HINCRBY', KEYS[4], userId, -1) <= 0 then redis.call('HDEL', KEYS[4], userId) end
return fields
`;

/** Instance slot: forget one user's session there. KEYS: instance sessions, instance users. ARGV: sessionId, userId. */
const FORGET_ON_INSTANCE_LUA = `
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and ARGV[2] ~= '' then
  if redis.call('HINCRBY', KEYS[2], ARGV[2], -1) <= 0 then redis.call('HDEL', KEYS[2], ARGV[2]) end
end
return 1
`;

/** KEYS[1] session hash. ARGV: ttlSeconds, now. Extends and stamps an existing record only. */
// Only a session that still exists: an HSET on a key that is gone would create a bare one.
const NOTE_SUBSCRIPTIONS_LUA = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'subscriptions', ARGV[1])
  return 1
end
return 0
`;

const TOUCH_LUA = `
if redis.call('EXPIRE', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'lastSeenAt', ARGV[2])
  return 1
end
return 0
`;


type ScriptFn = (...args: (string | number)[]) => Promise<unknown>;

function recordFields(record: SessionRecord): string[] {
  return [
    'userId', record.userId,
    'roles', JSON.stringify(record.roles),
    'instanceId', record.instanceId,
    'transport', record.transport,
    'remoteAddress', record.remoteAddress,
    'connectedAt', String(record.connectedAt),
    'lastSeenAt', String(record.lastSeenAt),
    ...(record.subscriptions === undefined ? [] : ['subscriptions', JSON.stringify(record.subscriptions)]),
  ];
}

function parseSubscriptions(json: string | undefined): SubscriptionNote[] | undefined {
  if (json === undefined) return undefined;
  try {
    const parsed: unknown = JSON.parse(json);
    return Array.isArray(parsed) ? (parsed as SubscriptionNote[]) : undefined;
  } catch {
    return undefined;
  }
}

export function parseRecord(sessionId: string, hash: Record<string, string>): SessionRecord | undefined {
  if (hash.userId === undefined) return undefined;
  let roles: string[] = [];
  try {
    const parsed: unknown = JSON.parse(hash.roles ?? '[]');
    if (Array.isArray(parsed)) roles = parsed.filter((r): r is string => typeof r === 'string');
  } catch {
    roles = [];
  }
  return {
    sessionId,
    userId: hash.userId,
    roles,
    instanceId: hash.instanceId ?? '',
    transport: hash.transport ?? '',
    remoteAddress: hash.remoteAddress ?? '',
    connectedAt: Number(hash.connectedAt ?? 0),
    lastSeenAt: Number(hash.lastSeenAt ?? 0),
    ...(hash.subscriptions === undefined ? {} : { subscriptions: parseSubscriptions(hash.subscriptions) ?? [] }),
  };
}

function pairsToObject(flat: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(flat)) return out;
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = String(flat[i + 1]);
  return out;
}

export interface RedisRegistryOptions {
  redis: RedisConnection;
  keys: RedisKeys;
  instanceId: string;
  sessionTtlSeconds: number;
}

/** What the registry needs of membership (membership.ts); absent in tests of the registry alone. */
export interface RegistryMembership {
  /** Whether this instance may write for itself now (joined, not fenced). */
  readonly isJoined: boolean;
  /** The liveness key and the generation it must hold for a write to be accepted. */
  readonly fence: { key: string; generation: string };
  /**
   * Whether another instance may be taken for dead now: not just after this instance's Redis
   * connection came back, before the others had a TTL to refresh their liveness keys.
   */
  readonly mayJudgeOthers: boolean;
  /** Whether Redis is still the one this instance knew (false: it lost its data; membership rebuilds). */
  isSameRedis(): Promise<boolean>;
  /** Declare dead those of `instanceIds` that have no connection to Redis any more; whether any was. */
  forgetVanished(instanceIds: readonly string[]): Promise<boolean>;
}

/** ERROR texts for sessions the registry no longer holds. */
export const DISPLACED_TEXT = 'this session is no longer registered (kicked, replaced, or taken for lost while its instance was out of touch); reconnect';
export const DEAD_HOLDER_TEXT = 'the instance holding this session was out of touch and the user connected again elsewhere; reconnect';
export const REPLACED_TEXT = 'replaced by a newer session of the same user';

const UNLIMITED: BindPolicy = { maxPerUser: Infinity, mode: 'reject' };

export class RedisRegistry implements SessionRegistry {
  readonly keys: RedisKeys;
  readonly instanceId: string;
  private readonly redis: RedisConnection;
  private readonly ttlSeconds: number;
  private readonly isCluster: boolean;
  /** Sessions this instance registered and has not unregistered: refreshed, and re-registered after Redis lost its data. */
  private readonly local = new Map<string, SessionRecord>();
  /** The policy each local session was bound under: a re-registration goes through it again. */
  private readonly policies = new Map<string, BindPolicy>();
  /** Local sessions admitted while Redis was away (no limit to check), not yet written. */
  private readonly pending = new Set<string>();
  private readonly bindScript: LuaScript;
  private readonly registerScript: LuaScript;
  /** Set by the cluster node: fencing and "is Redis the same?" (membership.ts). */
  membership: RegistryMembership | undefined;
  /** Set by the cluster node: a local session the registry no longer holds must close (ERROR code). */
  onDisplaced: (sessionId: string, code: 'UNAVAILABLE' | 'SESSION_REPLACED', message: string) => void = () => undefined;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(options: RedisRegistryOptions) {
    this.redis = options.redis;
    this.keys = options.keys;
    this.instanceId = options.instanceId;
    this.ttlSeconds = options.sessionTtlSeconds;
    this.isCluster = isCluster(options.redis);
    this.bindScript = new LuaScript(this.redis, 'registry-bind', [1]);
    this.registerScript = new LuaScript(this.redis, 'registry-register', [6]);
    this.redis.defineCommand('stompdUnregister', { numberOfKeys: 4, lua: UNREGISTER_SINGLE_LUA });
    this.redis.defineCommand('stompdForgetOnInstance', { numberOfKeys: 2, lua: FORGET_ON_INSTANCE_LUA });
    this.redis.defineCommand('stompdTouch', { numberOfKeys: 1, lua: TOUCH_LUA });
    this.redis.defineCommand('stompdNoteSubscriptions', { numberOfKeys: 1, lua: NOTE_SUBSCRIPTIONS_LUA });
  }

  /** Kept with the local record too, so a re-registration after Redis lost its data carries them. */
  async noteSubscriptions(sessionId: string, subscriptions: readonly SubscriptionNote[]): Promise<void> {
    const local = this.local.get(sessionId);
    if (local !== undefined) this.local.set(sessionId, { ...local, subscriptions });
    await this.script('stompdNoteSubscriptions')(this.keys.session(sessionId), JSON.stringify(subscriptions));
  }

  /** Local sessions bound under a limit (a decision across instances): what a lost lease closes. */
  limitedSessionIds(): string[] {
    return [...this.policies].filter(([, policy]) => Number.isFinite(policy.maxPerUser)).map(([sessionId]) => sessionId);
  }

  /** Sessions registered by this instance. */
  get localSessions(): ReadonlyMap<string, SessionRecord> {
    return this.local;
  }

  /**
   * While Redis is unreachable, a session without a limit to check is admitted and kept
   * here, to be registered when Redis is back (refresh); one with a limit cannot be
   * decided: RegistryUnavailableError.
   */
  async bind(record: SessionRecord, policy: BindPolicy): Promise<BindResult> {
    const max = Number.isFinite(policy.maxPerUser) ? policy.maxPerUser : -1;
    const attempt = async (): Promise<[number, ...string[]]> => {
      const reply = await this.write(record, max, policy.mode);
      // This instance's generation is not the live one (fenced, or not joined again yet): no
      // decision could be made here, which a client must hear as UNAVAILABLE, not as a refusal.
      if (reply[0] === -1) throw new Error('fenced: this instance is joining the cluster again');
      return reply;
    };
    let reply: [number, ...string[]];
    try {
      reply = await attempt();
      // Refused: a holder's instance may have died a moment ago (its liveness key has not
      // expired yet). If so, the user must not wait for the TTL: decide again without it.
      if (reply[0] !== 1 && this.membership?.mayJudgeOthers !== false && (await this.forgetVanishedHolders(reply.slice(1) as string[]))) reply = await attempt();
    } catch (error) {
      if (max >= 0) throw new RegistryUnavailableError(error);
      this.local.set(record.sessionId, record);
      this.policies.set(record.sessionId, policy);
      this.pending.add(record.sessionId);
      return { isBound: true, evicted: [] };
    }
    const [verdict, ...ids] = reply;
    if (verdict !== 1) return { isBound: false, holders: await this.recordsOf(ids) };
    this.local.set(record.sessionId, record);
    this.policies.set(record.sessionId, policy);
    if (this.isCluster) for (const id of ids) await this.tell(id, 'SESSION_REPLACED', REPLACED_TEXT).catch(() => undefined);
    // An evicted session's record may already be gone (its owner closing it): the id is what a kick needs.
    const found = new Map((await this.recordsOf(ids)).map((r) => [r.sessionId, r]));
    return { isBound: true, evicted: ids.map((id) => found.get(id) ?? { ...record, sessionId: id, instanceId: '', roles: [] }) };
  }

  async unbind(sessionId: string): Promise<void> {
    const record = this.local.get(sessionId);
    this.local.delete(sessionId);
    this.policies.delete(sessionId);
    this.pending.delete(sessionId);
    const pending = this.unregister(sessionId, record?.instanceId ?? this.instanceId).then(() => undefined);
    this.inFlight.add(pending);
    try {
      await pending;
    } finally {
      this.inFlight.delete(pending);
    }
  }

  /** Wait (at most `timeoutMs`) for unbinds under way: a stopping instance leaves Redis tidy. */
  async settle(timeoutMs: number): Promise<void> {
    if (this.inFlight.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /**
   * Remove a session from every index; returns its record if this call removed it (exactly
   * one caller gets it when several race), undefined if it was already gone.
   */
  async unregister(sessionId: string, instanceId: string): Promise<SessionRecord | undefined> {
    const { keys } = this;
    if (!this.isCluster) {
      const fields = await this.script('stompdUnregister')(
        keys.session(sessionId), keys.allSessions, keys.instanceSessions(instanceId), keys.instanceUsers(instanceId),
        sessionId, keys.userPrefix,
      );
      return parseRecord(sessionId, pairsToObject(fields));
    }
    const record = parseRecord(sessionId, await this.redis.hgetall(keys.session(sessionId)));
    if (record !== undefined) await this.redis.zrem(keys.user(record.userId), sessionId);
    const deleted = await this.redis.del(keys.session(sessionId));
    await Promise.all([
      this.redis.srem(keys.allSessions, sessionId),
      this.script('stompdForgetOnInstance')(keys.instanceSessions(instanceId), keys.instanceUsers(instanceId), sessionId, deleted === 1 && record ? record.userId : ''),
    ]);
    return deleted === 1 ? record : undefined;
  }

  async get(sessionId: string): Promise<SessionRecord | undefined> {
    return parseRecord(sessionId, await this.redis.hgetall(this.keys.session(sessionId)));
  }

  async sessionsOf(userId: string): Promise<SessionRecord[]> {
    return this.recordsOf(await this.redis.zrange(this.keys.user(userId), 0, -1));
  }

  async onlineUsers(): Promise<string[]> {
    const users = new Set<string>();
    for (const instanceId of await this.liveInstances()) {
      for (const userId of await this.redis.hkeys(this.keys.instanceUsers(instanceId))) users.add(userId);
    }
    return [...users];
  }

  /** Instances whose liveness key exists. */
  async liveInstances(): Promise<string[]> {
    const known = await this.redis.smembers(this.keys.instances);
    const alive = await Promise.all(known.map((id) => this.redis.exists(this.keys.instance(id))));
    return known.filter((_, i) => alive[i] === 1);
  }

  /**
   * Every live session of this instance: extend its key's TTL and note it alive. A session
   * admitted while Redis was away is written now, through its policy. A session whose record
   * or user-set entry is gone was removed by someone else (an admin kick, a replace, a
   * CONNECT elsewhere that took this instance for dead): the registry is the truth, so the
   * session is closed (onDisplaced), never written back. When Redis itself lost its data,
   * nothing is judged here: membership rebuilds (rebuild()).
   */
  async refresh(now = Date.now()): Promise<void> {
    const records = [...this.local.values()].filter((r) => !this.pending.has(r.sessionId));
    const pendingRecords = [...this.local.values()].filter((r) => this.pending.has(r.sessionId));
    if (records.length > 0) {
      const touched = await Promise.all(records.map((r) => this.script('stompdTouch')(this.keys.session(r.sessionId), this.ttlSeconds, now)));
      const scores = await Promise.all(records.map((r) => this.redis.zscore(this.keys.user(r.userId), r.sessionId)));
      const missing = records.filter((_, i) => touched[i] !== 1 || scores[i] === null);
      if (missing.length > 0 && (this.membership === undefined || (await this.membership.isSameRedis()))) {
        for (const record of missing) {
          if (!this.local.has(record.sessionId)) continue; // ended meanwhile
          await this.unregister(record.sessionId, record.instanceId); // whatever half of it is left
          this.forget(record.sessionId);
          this.onDisplaced(record.sessionId, 'UNAVAILABLE', DISPLACED_TEXT);
        }
      }
    }
    if (pendingRecords.length > 0) await this.reregister(pendingRecords);
  }

  /**
   * SSCAN over `sessions:all`, never KEYS. SSCAN may hand back more ids than a page takes
   * (a small set comes whole): the surplus travels in the cursor, so nothing is skipped.
   * The cursor is { c: SSCAN cursor, or "done"; r: ids still to hand out }.
   */
  async listSessions(cursor: string | undefined, limit: number): Promise<SessionPage> {
    let scanCursor = '0';
    let rest: string[] = [];
    if (cursor !== undefined) {
      try {
        const state = JSON.parse(decodeCursor(cursor, 'r:')) as { c: unknown; r: unknown };
        if (typeof state.c !== 'string' || !Array.isArray(state.r) || !state.r.every((id) => typeof id === 'string')) throw new InvalidCursorError();
        scanCursor = state.c;
        rest = state.r as string[];
      } catch {
        throw new InvalidCursorError();
      }
    }
    const sessionIds: string[] = [];
    for (;;) {
      const taken = Math.min(rest.length, limit - sessionIds.length);
      sessionIds.push(...rest.slice(0, taken));
      rest = rest.slice(taken);
      if (sessionIds.length >= limit || scanCursor === 'done') break;
      const [next, batch] = await this.redis.sscan(this.keys.allSessions, scanCursor, 'COUNT', Math.max(limit, 100));
      scanCursor = next === '0' ? 'done' : next;
      rest = batch;
    }
    const totalCount = await this.redis.scard(this.keys.allSessions);
    const isLast = rest.length === 0 && scanCursor === 'done';
    return { sessionIds, totalCount, nextCursor: isLast ? undefined : encodeCursor('r:', JSON.stringify({ c: scanCursor, r: rest })) };
  }

  async onlineUsersPage(query: OnlineUsersQuery): Promise<OnlineUsersPage> {
    return pageOnlineUsers(await this.onlineUsers(), (userId) => this.sessionsOf(userId), query);
  }

  /**
   * Counts from the per-instance sets; sessions per transport need each session's hash:
   * read in SSCAN batches (pipelined), so the cost grows with the sessions but never blocks Redis.
   */
  async stats(): Promise<RegistryStats> {
    const { keys, redis } = this;
    const instances = await this.liveInstances();
    const perInstance: Record<string, { sessions: number; users: number }> = {};
    await Promise.all(
      instances.map(async (instanceId) => {
        const [sessions, users] = await Promise.all([redis.scard(keys.instanceSessions(instanceId)), redis.hlen(keys.instanceUsers(instanceId))]);
        perInstance[instanceId] = { sessions, users };
      }),
    );
    const byTransport: Record<string, number> = {};
    let scanCursor = '0';
    do {
      const [next, batch] = await redis.sscan(keys.allSessions, scanCursor, 'COUNT', 1000);
      scanCursor = next;
      const transports = await Promise.all(batch.map((id) => redis.hget(keys.session(id), 'transport')));
      for (const transport of transports) if (transport !== null) byTransport[transport] = (byTransport[transport] ?? 0) + 1;
    } while (scanCursor !== '0');
    const [totalActiveSessions, onlineUsers] = await Promise.all([redis.scard(keys.allSessions), this.onlineUsers()]);
    return { totalActiveSessions, onlineUsers: onlineUsers.length, byTransport, perInstance };
  }

  /** Extend the session key's TTL and note it alive (the HTTP API's refresh); undefined when unknown. */
  async refreshSession(sessionId: string, now = Date.now()): Promise<{ record: SessionRecord; ttlSeconds: number } | undefined> {
    const key = this.keys.session(sessionId);
    // EXPIRE first: an HSET on a key that is gone would create a bare one.
    if ((await this.redis.expire(key, this.ttlSeconds)) !== 1) return undefined;
    await this.redis.hset(key, 'lastSeenAt', String(now));
    const record = await this.get(sessionId);
    if (record === undefined) return undefined;
    const local = this.local.get(sessionId);
    if (local !== undefined) this.local.set(sessionId, { ...local, lastSeenAt: now });
    return { record, ttlSeconds: this.ttlSeconds };
  }

  /**
   * Redis lost its data: write this instance's live sessions again, each through the policy
   * it was bound under. A session that another took the place of meanwhile (reject), or that
   * is older than the user's newer session (replace), is closed instead.
   */
  async rebuild(): Promise<void> {
    await this.reregister([...this.local.values()]);
  }

  /**
   * Write `records` again through their policies. A session that ends while this runs (it is
   * no longer in `local` once its turn comes, or once it was written) is removed again, so a
   * closed session is never left registered.
   */
  private async reregister(records: readonly SessionRecord[]): Promise<void> {
    for (const record of records) {
      if (!this.local.has(record.sessionId)) continue;
      const policy = this.policies.get(record.sessionId) ?? UNLIMITED;
      const max = Number.isFinite(policy.maxPerUser) ? policy.maxPerUser : -1;
      const [verdict, ...ids] = await this.write(record, max, policy.mode);
      if (verdict === -1) throw new Error('fenced: this instance\'s generation is not the live one');
      this.pending.delete(record.sessionId);
      if (verdict !== 1) {
        this.forget(record.sessionId);
        this.onDisplaced(record.sessionId, verdict === 2 ? 'SESSION_REPLACED' : 'UNAVAILABLE', verdict === 2 ? REPLACED_TEXT : DEAD_HOLDER_TEXT);
        continue;
      }
      if (this.isCluster) for (const id of ids) await this.tell(id, 'SESSION_REPLACED', REPLACED_TEXT).catch(() => undefined);
      if (!this.local.has(record.sessionId)) await this.unregister(record.sessionId, record.instanceId);
    }
  }

  /**
   * Make Redis agree with this instance after a reconnect: sessions that ended meanwhile
   * (their unregister failed) are removed; the live ones are checked (refresh).
   */
  async reconcile(): Promise<void> {
    const listed = await this.redis.smembers(this.keys.instanceSessions(this.instanceId));
    for (const sessionId of listed) if (!this.local.has(sessionId)) await this.unregister(sessionId, this.instanceId);
    await this.refresh();
  }

  /**
   * Tell the instance holding `sessionId` to close it, through its inbox (kept in Redis:
   * nothing lost if its pub/sub connection is down). False when the session is unknown.
   */
  async tell(sessionId: string, code: 'KICKED' | 'SESSION_REPLACED' | 'UNAVAILABLE' | 'LOGGED_OUT', message: string): Promise<boolean> {
    const instanceId = await this.redis.hget(this.keys.session(sessionId), 'instanceId');
    if (instanceId === null) return false;
    await this.pushInbox(instanceId, { type: 'kick', sessionId, code, message });
    return true;
  }

  /** Append a command to an instance's inbox (membership.ts pops it every heart-beat). */
  async pushInbox(instanceId: string, command: ControlMessage): Promise<void> {
    const inbox = this.keys.instanceInbox(instanceId);
    await this.redis.multi().rpush(inbox, encodeControl(command)).expire(inbox, INBOX_TTL_SECONDS).exec();
  }

  private forget(sessionId: string): void {
    this.local.delete(sessionId);
    this.policies.delete(sessionId);
    this.pending.delete(sessionId);
  }

  /** One registration attempt: {1, evicted…}, {0, holders…}, {2} (lost to a newer one), {-1} (fenced). */
  private async write(record: SessionRecord, max: number, mode: string): Promise<[number, ...string[]]> {
    if (this.isCluster) {
      if (this.membership !== undefined && !this.membership.isJoined) return [-1];
      const reply = (await this.bindOnCluster(record, max, mode)) as [number, ...string[]];
      if (reply[0] !== 1) await this.undoClusterSteps(record);
      return reply.map((v, i) => (i === 0 ? Number(v) : String(v))) as [number, ...string[]];
    }
    const reply = (await this.registerOnSingle(record, max, mode)) as unknown[];
    return reply.map((v, i) => (i === 0 ? Number(v) : String(v))) as [number, ...string[]];
  }

  private async registerOnSingle(record: SessionRecord, max: number, mode: string): Promise<unknown> {
    const { keys } = this;
    const fence = this.membership?.fence;
    return this.registerScript.run(
      [keys.user(record.userId), keys.session(record.sessionId), keys.allSessions, keys.instanceSessions(record.instanceId), keys.instanceUsers(record.instanceId), fence?.key ?? keys.instance(record.instanceId)],
      [
        record.sessionId, record.connectedAt, max, mode, this.ttlSeconds, keys.sessionPrefix, keys.instancePrefix, fence?.generation ?? '',
        DEAD_HOLDER_TEXT, REPLACED_TEXT, INBOX_TTL_SECONDS, this.membership?.mayJudgeOthers === false ? '0' : '1',
        ...recordFields(record),
      ],
    );
  }

  private async bindOnCluster(record: SessionRecord, max: number, mode: string): Promise<unknown> {
    const { keys, redis } = this;
    const sessionKey = keys.session(record.sessionId);
    const isNew = (await redis.sadd(keys.instanceSessions(record.instanceId), record.sessionId)) === 1;
    await redis.multi().hset(sessionKey, ...recordFields(record)).expire(sessionKey, this.ttlSeconds).exec();
    const dead = max < 0 || this.membership?.mayJudgeOthers === false ? [] : await this.deadHolders(record.userId);
    const reply = await this.bindScript.run([keys.user(record.userId)], [record.sessionId, record.connectedAt, max, mode, ...dead]);
    if ((reply as unknown[])[0] === 1) {
      await Promise.all([redis.sadd(keys.allSessions, record.sessionId), isNew ? redis.hincrby(keys.instanceUsers(record.instanceId), record.userId, 1) : Promise.resolve(0)]);
    }
    return reply;
  }

  /**
   * Holders' instances that have vanished (membership.forgetVanished: no connection to Redis
   * any more) are declared dead now, so holders there no longer count. Returns whether any was.
   */
  private async forgetVanishedHolders(holderIds: readonly string[]): Promise<boolean> {
    if (holderIds.length === 0 || this.membership === undefined) return false;
    const instanceIds = await Promise.all(holderIds.map((id) => this.redis.hget(this.keys.session(id), 'instanceId')));
    const others = [...new Set(instanceIds.filter((i): i is string => i !== null && i !== this.instanceId))];
    return others.length > 0 && (await this.membership.forgetVanished(others));
  }

  private async undoClusterSteps(record: SessionRecord): Promise<void> {
    await this.redis.del(this.keys.session(record.sessionId));
    await this.redis.srem(this.keys.instanceSessions(record.instanceId), record.sessionId);
  }

  /** The user's sessions whose record is gone or whose instance's liveness key expired. */
  private async deadHolders(userId: string): Promise<string[]> {
    const holders = await this.redis.zrange(this.keys.user(userId), 0, -1);
    if (holders.length === 0) return [];
    const instances = await Promise.all(holders.map((id) => this.redis.hget(this.keys.session(id), 'instanceId')));
    const distinct = [...new Set(instances.filter((i): i is string => i !== null && i !== this.instanceId))];
    const aliveFlags = await Promise.all(distinct.map((id) => this.redis.exists(this.keys.instance(id))));
    const alive = new Set(distinct.filter((_, i) => aliveFlags[i] === 1));
    alive.add(this.instanceId);
    return holders.filter((_, i) => instances[i] === null || !alive.has(instances[i]!));
  }

  private async recordsOf(sessionIds: readonly string[]): Promise<SessionRecord[]> {
    const hashes = await Promise.all(sessionIds.map((id) => this.redis.hgetall(this.keys.session(id))));
    const records: SessionRecord[] = [];
    sessionIds.forEach((id, i) => {
      const record = parseRecord(id, hashes[i]!);
      if (record !== undefined) records.push(record);
    });
    return records;
  }

  private script(name: string): ScriptFn {
    return (this.redis as unknown as Record<string, ScriptFn>)[name]!.bind(this.redis);
  }
}
