// The session registry in Redis, shared by every instance (see keys.ts for the layout).
//
// bind is decided atomically by one Lua script on the user's sorted set `user:{userId}`
// (include/registry-policy.lua): it drops the holders known to be dead (dead-holders.ts judges),
// counts the rest against the limit, and either refuses, admits, or evicts the oldest
// (replace). How a session is written around that decision depends on the kind of Redis: one
// script on a single Redis, ordered steps per slot on a Cluster (registry-writes-*.ts, chosen
// once here). The record's hash is session-hash.ts.
//
// This instance's own sessions are kept here too (`local`): refreshed while they live,
// registered again through their policy after Redis lost its data, and closed (onDisplaced)
// when the registry no longer holds them: the registry is the truth, a session it dropped is
// never written back.

import { InvalidCursorError, RegistryUnavailableError, decodeCursor, encodeCursor, pageOnlineUsers } from '../registry/registry';
import type { BindPolicy, BindResult, OnlineUsersPage, OnlineUsersQuery, RegistryStats, SessionPage, SessionRecord, SessionRegistry, SubscriptionNote } from '../registry/registry';
import { encodeControl } from './control';
import type { ControlMessage } from './control';
import { DeadHolders } from './dead-holders';
import type { HolderJudge } from './dead-holders';
import type { InstanceLossHandler, LossReport, ReapClaim } from './instance-loss';
import type { RedisKeys } from './keys';
import { LuaScript } from './lua';
import { INBOX_TTL_SECONDS } from './membership';
import { isCluster } from './redis-client';
import type { RedisConnection } from './redis-client';
import { DEAD_HOLDER_TEXT, DISPLACED_TEXT, REPLACED_TEXT } from './registry-texts';
import type { RegistrationReply, RegistryWrites, WriterFence } from './registry-writes';
import { ClusterRegistryWrites } from './registry-writes-cluster';
import { SingleRedisRegistryWrites } from './registry-writes-single';
import { encodeSubscriptions, parseSessionHash } from './session-hash';

export interface RedisRegistryOptions {
  redis: RedisConnection;
  keys: RedisKeys;
  instanceId: string;
  sessionTtlSeconds: number;
}

/** What the registry needs of membership (membership.ts); absent in tests of the registry alone. */
export interface RegistryMembership extends WriterFence, HolderJudge {
  /** Whether Redis is still the one this instance knew (false: it lost its data; membership rebuilds). */
  isSameRedis(): Promise<boolean>;
}

const UNLIMITED: BindPolicy = { maxPerUser: Infinity, mode: 'reject' };

export class RedisRegistry implements SessionRegistry, InstanceLossHandler {
  readonly keys: RedisKeys;
  readonly instanceId: string;
  private readonly redis: RedisConnection;
  private readonly ttlSeconds: number;
  private readonly writes: RegistryWrites;
  private readonly deadHolders: DeadHolders;
  private readonly touchScript: LuaScript;
  private readonly noteSubscriptionsScript: LuaScript;
  /** Sessions this instance registered and has not unregistered: refreshed, and re-registered after Redis lost its data. */
  private readonly local = new Map<string, SessionRecord>();
  /** The policy each local session was bound under: a re-registration goes through it again. */
  private readonly policies = new Map<string, BindPolicy>();
  /** Local sessions admitted while Redis was away (no limit to check), not yet written. */
  private readonly pending = new Set<string>();
  /** Set by the cluster node: fencing and "is Redis the same?" (membership.ts). */
  membership: RegistryMembership | undefined;
  /** Set by the cluster node: a local session the registry no longer holds must close (ERROR code). */
  onDisplaced: (sessionId: string, code: 'UNAVAILABLE' | 'SESSION_REPLACED', message: string) => void = () => undefined;
  /** Set by the cluster node: a dead instance's session this instance removed (reported once: `instance-lost`). Must not throw. */
  onSessionLost: (record: SessionRecord) => void = () => undefined;
  private readonly inFlight = new Set<Promise<void>>();

  constructor(options: RedisRegistryOptions) {
    this.redis = options.redis;
    this.keys = options.keys;
    this.instanceId = options.instanceId;
    this.ttlSeconds = options.sessionTtlSeconds;
    const writesOptions = { redis: this.redis, keys: this.keys, sessionTtlSeconds: this.ttlSeconds, writer: () => this.membership };
    this.writes = isCluster(this.redis) ? new ClusterRegistryWrites(writesOptions) : new SingleRedisRegistryWrites(writesOptions);
    this.deadHolders = new DeadHolders(this.redis, this.keys, this.instanceId, () => this.membership);
    this.touchScript = new LuaScript(this.redis, 'registry-touch', [1]);
    this.noteSubscriptionsScript = new LuaScript(this.redis, 'registry-note-subscriptions', [1]);
  }

  /** Kept with the local record too, so a re-registration after Redis lost its data carries them. */
  async noteSubscriptions(sessionId: string, subscriptions: readonly SubscriptionNote[]): Promise<void> {
    const local = this.local.get(sessionId);
    if (local !== undefined) this.local.set(sessionId, { ...local, subscriptions });
    await this.noteSubscriptionsScript.run([this.keys.session(sessionId)], [encodeSubscriptions(subscriptions)]);
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
    const attempt = async (): Promise<RegistrationReply> => {
      const reply = await this.write(record, policy, true);
      // This instance's generation is not the live one (fenced, or not joined again yet): no
      // decision could be made here, which a client must hear as UNAVAILABLE, not as a refusal.
      if (reply[0] === -1) throw new Error('fenced: this instance is joining the cluster again');
      return reply;
    };
    let reply: RegistrationReply;
    try {
      reply = await attempt();
      // Refused: a holder's instance may have died a moment ago (its liveness key has not
      // expired yet). If so, the user must not wait for the TTL: decide again without it.
      if (reply[0] !== 1 && (await this.deadHolders.forgetVanished(reply.slice(1) as string[]))) reply = await attempt();
    } catch (error) {
      if (max >= 0) throw new RegistryUnavailableError(error);
      this.local.set(record.sessionId, record);
      this.policies.set(record.sessionId, policy);
      this.pending.add(record.sessionId);
      return { isBound: true, evicted: [] };
    }
    const [verdict, ...ids] = reply;
    if (verdict !== 1) {
      // Refused (only under a limit): nothing was written. Redis going away before the holders
      // are read is still UNAVAILABLE to the client, not an internal error.
      const holders = await this.recordsOf(ids).catch((error: unknown) => {
        throw new RegistryUnavailableError(error);
      });
      return { isBound: false, holders };
    }
    this.local.set(record.sessionId, record);
    this.policies.set(record.sessionId, policy);
    if (ids.length === 0) return { isBound: true, evicted: [] }; // the usual CONNECT: nobody to tell
    await this.tellEvicted(ids);
    // An evicted session's record may already be gone (its owner closing it), or Redis away
    // now (the session is bound: the evicted were told through their inboxes by the script):
    // the id is what a kick needs.
    const found = new Map((await this.recordsOf(ids).catch(() => [])).map((r) => [r.sessionId, r]));
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
  async finishUnbinds(timeoutMs: number): Promise<void> {
    if (this.inFlight.size === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
  }

  /**
   * Remove a session from every index; returns its record if this call removed it (exactly
   * one caller gets it when several race), undefined if it was already gone.
   */
  unregister(sessionId: string, instanceId: string): Promise<SessionRecord | undefined> {
    return this.writes.unregister(sessionId, instanceId);
  }

  /**
   * A dead generation's sessions: each is unregistered, and the ones this call removed are
   * reported lost (onSessionLost), once however many reapers race.
   */
  async onInstanceLost(deadId: string, _generation: string, claim: ReapClaim): Promise<LossReport> {
    const sessionIds = await this.redis.smembers(this.keys.instanceSessions(deadId));
    let sessions = 0;
    for (const [i, sessionId] of sessionIds.entries()) {
      if (i % 50 === 49) await claim.keep(); // a long reap keeps its claim, a stalled one learns it lost it
      const record = await this.unregister(sessionId, deadId);
      if (record === undefined) continue;
      sessions++;
      this.onSessionLost(record);
    }
    return { sessions };
  }

  async get(sessionId: string): Promise<SessionRecord | undefined> {
    return parseSessionHash(sessionId, await this.redis.hgetall(this.keys.session(sessionId)));
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
      const touched = await Promise.all(records.map((r) => this.touchScript.run([this.keys.session(r.sessionId)], [this.ttlSeconds, now])));
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
        rest = state.r;
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
      const [verdict, ...ids] = await this.write(record, policy);
      if (verdict === -1) throw new Error("fenced: this instance's generation is not the live one");
      this.pending.delete(record.sessionId);
      if (verdict !== 1) {
        this.forget(record.sessionId);
        this.onDisplaced(record.sessionId, verdict === 2 ? 'SESSION_REPLACED' : 'UNAVAILABLE', verdict === 2 ? REPLACED_TEXT : DEAD_HOLDER_TEXT);
        continue;
      }
      await this.tellEvicted(ids);
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

  /**
   * One registration attempt through `policy`, holders on dead instances dropped. `mayWait`: a
   * CONNECT's own (independent of every other), not one of a sequence awaited in turn.
   */
  private async write(record: SessionRecord, policy: BindPolicy, mayWait = false): Promise<RegistrationReply> {
    const max = Number.isFinite(policy.maxPerUser) ? policy.maxPerUser : -1;
    // On a single Redis the registration script judges the holders itself (one round trip).
    const dead = max < 0 || !this.deadHolders.mayJudge ? [] : this.writes.judgesDeadHolders ? 'judge' : await this.deadHolders.of(record.userId);
    return this.writes.register({ record, max, mode: policy.mode, dead, mayWait });
  }

  /** Holders a registration evicted, told to close unless the write told them itself. */
  private async tellEvicted(sessionIds: readonly string[]): Promise<void> {
    if (!this.writes.leavesEvictedUntold) return;
    for (const id of sessionIds) await this.tell(id, 'SESSION_REPLACED', REPLACED_TEXT).catch(() => undefined);
  }

  private async recordsOf(sessionIds: readonly string[]): Promise<SessionRecord[]> {
    const hashes = await Promise.all(sessionIds.map((id) => this.redis.hgetall(this.keys.session(id))));
    const records: SessionRecord[] = [];
    sessionIds.forEach((id, i) => {
      const record = parseSessionHash(id, hashes[i]!);
      if (record !== undefined) records.push(record);
    });
    return records;
  }
}
