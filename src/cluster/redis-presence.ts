// Presence shared by every instance through Redis. One room's keys share a hash slot
// (`presence:{<room>}:…`), so a Lua script (src/cluster/lua/presence-*.lua) decides JOIN and
// LEAVE atomically there (the entries' JSON: presence-entries.ts):
//
//   presence:{room}:sessions  hash sessionId → {userId, roles, instanceId, joinedAt}
//   presence:{room}:users     hash userId → sessions of the user in the room
//   presence:{room}:members   hash userId → {userId, roles, joinedAt} (the member list)
//   presence:{room}:seq       the room's last decision number (TTL 60 s, renewed by each decision)
//   presence:{room}:log:1|2   the room's (1) and companion's (2) recent events (128, TTL 60 s)
//   presence:instance:{id}:rooms     set: rooms the instance has sessions in (what a reaper
//                                    leaves; this instance's repair after an outage)
//
// HSETNX / HDEL on the sessions hash make each session's join and leave count once, however
// many instances try (two reapers racing), and the per-user count turns them into one JOIN
// and one LEAVE per user. On a single Redis the script PUBLISHes the event itself, so the
// room's channel carries events in decision order; the envelope is built here and the script
// appends the seq to its body (the body is the envelope's last field, its length is free).
// The envelope's origin is not this instance's id, so this instance hears it back and
// delivers it like every other: one path, one order. On a Redis Cluster the channel lives
// in another slot, so the script returns the envelope and this instance SPUBLISHes it (order
// then holds per deciding instance).
//
// Outages: a step that fails leaves this instance's view (the tracker's local sessions) right
// and Redis stale; repair() on reconnect removes this instance's entries whose session is
// gone (their LEAVEs, with the reason remembered) and adds the live ones that are missing:
// silently when their JOIN was announced before (Redis restarted empty), with a JOIN if not.

import type { Logger } from 'pino';
import { encodeEnvelope } from './envelope';
import { InstanceClaim } from './instance-claim';
import { LuaScript } from './lua';
import type { InstanceLossHandler, LossReport } from './instance-loss';
import type { RedisKeys } from './keys';
import { encodeMember, encodeStoredEntry, parseMember, parseStoredEntry, sessionEntryOf } from './presence-entries';
import { isCluster } from './redis-client';
import type { RedisConnection } from './redis-client';
import type { WriterFence } from './registry-writes';
import { REPAIR_HEADER, presenceEventHeaders } from '../presence/presence';
import type { LeaveReason, PresenceEventBody, PresenceStore, RoomMatcher, RoomSnapshot, SessionEntry } from '../presence/presence';

/** How long a room's counter outlives its last decision. */
const SEQ_TTL_SECONDS = 60;
/** A destination's recent-events log: how many events, for how long after the last. */
export const LOG_LENGTH = 128;
const LOG_TTL_SECONDS = 60;

export interface RedisPresenceOptions {
  redis: RedisConnection;
  keys: RedisKeys;
  instanceId: string;
  matcher: RoomMatcher;
  messageIdPrefix: string;
  logger: Logger;
}

export class RedisPresence implements PresenceStore, InstanceLossHandler {
  /** This instance's sessions in rooms, by room (set by whoever tracks them: the tracker). */
  localEntries: () => Map<string, SessionEntry[]> = () => new Map();
  /** Whether this instance's session is in the room now (a repair runs beside joins and leaves). */
  isLocalEntry: (sessionId: string, room: string) => boolean = () => true;
  /** This instance's standing (membership.ts), set by the cluster node: on a single Redis a join from a reaped generation writes nothing. */
  writer: (() => WriterFence | undefined) | undefined;
  private readonly options: RedisPresenceOptions;
  private readonly redis: RedisConnection;
  private readonly prefix: string;
  private readonly isSharded: boolean;
  private messageSeq = 0;
  private readonly joinScript: LuaScript;
  private readonly leaveScript: LuaScript;
  private readonly snapshotScript: LuaScript;
  private readonly viewScript: LuaScript;
  private readonly claim: InstanceClaim;
  /** `sessionId\nroom` whose JOIN went through (was announced). */
  private readonly announced = new Set<string>();
  /** room → how many of this instance's sessions are announced in it: at 0 the room leaves this instance's list. */
  private readonly localCounts = new Map<string, number>();
  /** `sessionId\nroom` of joins under way (counted in localCounts already). */
  private readonly joining = new Set<string>();
  /** A join or leave step failed (its reply timed out, or Redis was away) since the last repair. */
  private hasFailedStep = false;
  /** Leaves under way: a repair waits for them before it tells the leaves Redis forgot. */
  private readonly leavesInFlight = new Set<Promise<void>>();
  /** `sessionId\nroom` whose leave failed → who left and why, told when repaired. */
  private readonly failedLeaves = new Map<string, { room: string; entry: SessionEntry; reason: LeaveReason }>();

  constructor(options: RedisPresenceOptions) {
    this.options = options;
    this.redis = options.redis;
    this.prefix = options.keys.prefix;
    this.isSharded = isCluster(options.redis);
    this.joinScript = new LuaScript(this.redis, 'presence-join', [this.isSharded ? 4 : 6]);
    this.leaveScript = new LuaScript(this.redis, 'presence-leave', [4]);
    this.snapshotScript = new LuaScript(this.redis, 'presence-snapshot', [2]);
    this.viewScript = new LuaScript(this.redis, 'presence-view', [3]);
    this.claim = new InstanceClaim(this.redis);
  }

  async join(room: string, entry: SessionEntry): Promise<void> {
    await this.joinAs(room, entry, true);
  }

  async leave(room: string, entry: SessionEntry, reason: LeaveReason): Promise<void> {
    const leaving = this.leaveAs(room, entry, reason, false);
    this.leavesInFlight.add(leaving);
    try {
      await leaving;
    } finally {
      this.leavesInFlight.delete(leaving);
    }
  }

  /**
   * `wasStored`: the entry was read from Redis (a repair, a reap), so its JOIN was told. A
   * failed leave is remembered, to be told after the outage, only when its JOIN was told: a
   * session whose join and leave both fell into an outage was never listed by anyone.
   */
  private async leaveAs(room: string, entry: SessionEntry, reason: LeaveReason, wasStored: boolean): Promise<void> {
    const key = `${entry.sessionId}\n${room}`;
    try {
      const envelopes = await this.leaveScript.runForBuffers(this.roomKeys(room), [
        ...this.announcing(),
        entry.sessionId,
        entry.userId,
        ...this.eventArgs(room, { type: 'LEAVE', userId: entry.userId, roles: entry.roles, sessionId: entry.sessionId, reason, at: Date.now() }),
      ]);
      const wasLocal = this.announced.delete(key);
      this.failedLeaves.delete(key);
      // No entry though this instance told the JOIN: Redis lost it (it restarted empty and the
      // repair has not put it back yet) or a reaper removed it. Kept for the repair, which
      // tells it only if Redis turns out to have lost its data.
      if (envelopes === 0 && wasLocal) this.failedLeaves.set(key, { room, entry, reason });
      await this.publishFinished(room, envelopes);
      if (wasLocal) await this.countLocal(room, -1);
    } catch (err) {
      this.hasFailedStep = true;
      if (wasStored || this.announced.has(key)) this.failedLeaves.set(key, { room, entry, reason });
      throw err;
    }
  }

  /**
   * A reaped instance's members leave every room it had sessions in, as `instance-lost`: the
   * rooms come from its list, the sessions from each room's entries (not from the registry,
   * which a session may have left just before the crash while its leaves were still under
   * way). Each leave is exactly-once with any other (the script's HDEL), so racing reapers,
   * or the fenced instance's own leaves, tell each LEAVE once.
   */
  async onInstanceLost(instanceId: string): Promise<LossReport> {
    return { roomEntries: await this.leaveEverywhere(instanceId) };
  }

  /** Every entry `instanceId` still has in a room leaves, as `instance-lost` (a reap, or this instance stopping); how many this call removed. */
  async leaveEverywhere(instanceId: string): Promise<number> {
    const roomsKey = this.instanceRoomsKeyOf(instanceId);
    let left = 0;
    for (const room of await this.redis.smembers(roomsKey)) {
      let cursor = '0';
      do {
        const [next, flat] = await this.redis.hscan(this.roomKeys(room)[0], cursor, 'COUNT', 500);
        cursor = next;
        for (let i = 0; i + 1 < flat.length; i += 2) {
          const entry = parseStoredEntry(flat[i + 1]!);
          if (entry === undefined || entry.instanceId !== instanceId) continue;
          await this.leaveAs(room, sessionEntryOf(flat[i]!, entry), 'instance-lost', true);
          left++;
        }
      } while (cursor !== '0');
    }
    await this.redis.del(roomsKey);
    return left;
  }

  /** Where a new watcher's list comes from when not from Redis directly (presence-views.ts). */
  watcherLists: ((room: string, fromRedis: () => Promise<RoomSnapshot>) => Promise<RoomSnapshot>) | undefined;

  /** A new watcher's list: the one this instance's watchers share, when there is one. */
  async watcherSnapshot(room: string): Promise<RoomSnapshot> {
    return this.watcherLists === undefined ? this.snapshot(room) : this.watcherLists(room, () => this.snapshot(room));
  }

  async snapshot(room: string): Promise<RoomSnapshot> {
    const [, , members, seq] = this.roomKeys(room);
    const reply = (await this.snapshotScript.run([members, seq], [])) as string[];
    const list = reply.slice(1).flatMap((json) => parseMember(json) ?? []);
    list.sort((a, b) => a.joinedAt - b.joinedAt || (a.userId < b.userId ? -1 : 1));
    return { seq: Number(reply[0]), members: list };
  }

  /**
   * The room's sessions with the decision number they were read at (0: no counter), for
   * presence-views.ts to compare with what this instance's watchers were told.
   */
  async view(room: string): Promise<{ seq: number; sessions: Map<string, { userId: string; roles: readonly string[]; joinedAt: number }>; forgotten: Map<string, string> }> {
    const [sessionsKey, , , seqKey] = this.roomKeys(room);
    const reply = (await this.viewScript.run([sessionsKey, seqKey, this.forgottenKey(room)], [])) as [string, string[], string[]];
    const sessions = new Map<string, { userId: string; roles: readonly string[]; joinedAt: number }>();
    const flat = reply[1] ?? [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const entry = parseStoredEntry(flat[i + 1]!);
      if (entry !== undefined) sessions.set(flat[i]!, { userId: entry.userId, roles: entry.roles, joinedAt: entry.joinedAt });
    }
    const forgotten = new Map<string, string>();
    const reasons = reply[2] ?? [];
    for (let i = 0; i + 1 < reasons.length; i += 2) forgotten.set(reasons[i]!, reasons[i + 1]!);
    return { seq: Number(reply[0]), sessions, forgotten };
  }

  /** Hash userId → reason of the LEAVEs Redis forgot, for an instance that corrects its watchers later (60 s). */
  private forgottenKey(room: string): string {
    return `${this.prefix}presence:{${room}}:forgotten`;
  }

  /** Rooms any listed instance has had sessions in (a superset: some may be empty now). */
  async rooms(): Promise<string[]> {
    const instances = await this.redis.smembers(this.options.keys.instances);
    const lists = await Promise.all(instances.map((id) => this.redis.smembers(this.instanceRoomsKeyOf(id))));
    return [...new Set(lists.flat())].sort();
  }

  /** Whether a join or leave step failed since the last repair (Redis slow or away): repair() makes it good. */
  get needsRepair(): boolean {
    return this.hasFailedStep;
  }

  /**
   * After Redis was away: make Redis match this instance's live sessions. Entries of other
   * instances are theirs to repair (or the reaper's, when they died).
   */
  async repair(isNewRedis = false): Promise<void> {
    this.hasFailedStep = false;
    try {
      await this.repairNow(isNewRedis);
    } catch (err) {
      this.hasFailedStep = true;
      throw err;
    }
  }

  private async repairNow(isNewRedis: boolean): Promise<void> {
    const local = this.localEntries();
    const listed = await this.redis.smembers(this.instanceRoomsKey());
    const rooms = new Set([...listed, ...local.keys()]);
    for (const room of rooms) {
      const live = new Map((local.get(room) ?? []).map((entry) => [entry.sessionId, entry]));
      const stored = await this.redis.hgetall(this.roomKeys(room)[0]);
      for (const [sessionId, json] of Object.entries(stored)) {
        const entry = parseStoredEntry(json);
        // Live when the list was taken, or joined since (its own join step wrote the entry).
        if (entry === undefined || entry.instanceId !== this.options.instanceId || live.has(sessionId) || this.isLocalEntry(sessionId, room)) continue;
        const reason = this.failedLeaves.get(`${sessionId}\n${room}`)?.reason ?? 'disconnect';
        await this.leaveAs(room, sessionEntryOf(sessionId, entry), reason, true);
      }
      for (const entry of live.values()) {
        if (stored[entry.sessionId] !== undefined) continue;
        // A session that left since the list was taken is not put back (its leave step ran
        // and found no entry: the LEAVE is told below); the check is made again just before
        // the script goes out, and a leave after that is sent behind this join, on the same
        // connection, so it finds the entry.
        const key = `${entry.sessionId}\n${room}`;
        if (!this.isLocalEntry(entry.sessionId, room)) continue;
        await this.joinAs(room, entry, !this.announced.has(key), () => this.isLocalEntry(entry.sessionId, room));
      }
      if (live.size === 0) await this.redis.srem(this.instanceRoomsKey(), room);
    }
    // Leaves that failed and whose entry Redis no longer had. Only when Redis lost its data
    // was that LEAVE never told: the watchers still list the user, so it is told now unless
    // the user is back in the room. (A session of the same user on an instance that has not
    // repaired yet is not seen here.) Otherwise the entry went with a LEAVE already told: by
    // this instance (the reply was lost) or by a reaper (this instance was taken for dead).
    await Promise.allSettled([...this.leavesInFlight]); // a leave sent during the repair may have found no entry
    for (const [key, { room, entry, reason }] of [...this.failedLeaves]) {
      this.failedLeaves.delete(key);
      if (!isNewRedis) continue;
      const [, users] = this.roomKeys(room);
      if ((await this.redis.hexists(users, entry.userId)) === 1) continue; // back in the room
      await this.publishForgotten(room, { type: 'LEAVE', userId: entry.userId, roles: entry.roles, sessionId: entry.sessionId, reason, at: Date.now() });
    }
  }

  /**
   * A LEAVE that Redis forgot (it restarted empty while the leave could not be decided). It is
   * not a decision: watchers whose list was read from the new Redis never listed the user.
   * Each instance whose watchers' list still has the user tells them (presence-views.ts);
   * the event has no number and is marked `x-presence-repair`.
   */
  private async publishForgotten(room: string, body: Omit<PresenceEventBody, 'seq'>): Promise<void> {
    const bytes = Buffer.from(JSON.stringify(body));
    // Kept for a while too: an instance whose subscriber connection is not back yet misses the
    // message, and its audit then tells the LEAVE with this reason.
    if (body.reason !== null) await this.redis.multi().hset(this.forgottenKey(room), body.userId, body.reason).expire(this.forgottenKey(room), 60).exec();
    const companion = this.options.matcher.companionOf(room);
    for (const destination of companion === undefined ? [room] : [room, companion]) {
      const envelope = encodeEnvelope({
        origin: `presence@${this.options.instanceId}`,
        messageId: `${this.options.messageIdPrefix}-p${++this.messageSeq}`,
        destination,
        routeKey: destination,
        headers: [...presenceEventHeaders(body.type), [REPAIR_HEADER, 'true']],
        body: bytes,
      });
      const channel = this.options.keys.destinationChannel(destination);
      if (this.isSharded) await this.redis.spublish(channel, envelope);
      else await this.redis.publish(channel, envelope);
    }
  }

  /** Keep this instance's list of rooms to the rooms it has sessions in (room names are unbounded). */
  private async countLocal(room: string, delta: number): Promise<void> {
    const count = (this.localCounts.get(room) ?? 0) + delta;
    if (count > 0) {
      this.localCounts.set(room, count);
      return;
    }
    this.localCounts.delete(room);
    await this.redis.srem(this.instanceRoomsKey(), room);
  }

  /** The last decision number of the room `destination` is (or is the companion of); undefined for a room with none. */
  async currentSeq(destination: string): Promise<number | undefined> {
    const room = this.options.matcher.roomOfCompanion(destination) ?? destination;
    const seq = await this.redis.get(this.roomKeys(room)[3]);
    return seq === null ? undefined : Number(seq);
  }

  /** The recent JOIN/LEAVE envelopes on `destination` (a room or a companion), oldest first. */
  async recentEvents(destination: string): Promise<Buffer[]> {
    const room = this.options.matcher.roomOfCompanion(destination);
    const [, , , seq] = this.roomKeys(room ?? destination);
    const log = `${seq.slice(0, -3)}log:${room === undefined ? 1 : 2}`;
    return this.redis.lrangeBuffer(log, 0, -1);
  }

  /**
   * `isStillLive` (a repair's join): checked once the rooms list is written, just before the
   * script goes out, so that a leave sent meanwhile is not undone by this join.
   */
  private async joinAs(room: string, entry: SessionEntry, shouldAnnounce: boolean, isStillLive?: () => boolean): Promise<void> {
    // The reaper's list first: a crash after it leaves a room listed with no entry of this
    // instance, which the reaper skips; the other order could leave a member nobody removes.
    // The room is counted before the SADD, so a leave of another local session finishing
    // meanwhile cannot take it off the list under this join.
    const key = `${entry.sessionId}\n${room}`;
    // Not a member now (fenced, or joining again): nothing is written for this instance. On a
    // single Redis the script checks the generation itself; a Cluster has only this check.
    if (this.writer?.()?.isJoined === false) {
      this.hasFailedStep = true;
      throw new Error("fenced: this instance's generation is not the live one (it joins again, and its sessions are repaired then)");
    }
    const isCounted = this.announced.has(key) || this.joining.has(key);
    if (!isCounted) {
      this.joining.add(key);
      this.localCounts.set(room, (this.localCounts.get(room) ?? 0) + 1);
    }
    try {
      // On a Cluster the rooms list is in another slot: written first, apart. On a single
      // Redis the script writes it, after checking the writer's generation (the fence).
      if (this.isSharded) {
        // The fence on a Cluster: claimed in the instance's own slot, with its generation checked.
        const claimed = await this.claim.claim(this.instanceRoomsKey(), this.options.keys.instance(this.options.instanceId), this.writer?.()?.fence, room);
        if (claimed === -1) throw new Error("fenced: this instance's generation is not the live one (it joins again, and its sessions are repaired then)");
      }
      if (isStillLive !== undefined && !isStillLive()) {
        if (this.joining.delete(key)) await this.countLocal(room, -1);
        return;
      }
      const fence = this.writer?.()?.fence;
      const fenceKeys = this.isSharded ? [] : [this.instanceRoomsKey(), fence?.key ?? this.options.keys.instance(this.options.instanceId)];
      const fenceArgs = this.isSharded ? [] : [fence?.generation ?? '', room];
      const envelopes = await this.joinScript.runForBuffers(
        [...this.roomKeys(room), ...fenceKeys],
        [
          ...this.announcing(),
          entry.sessionId,
          entry.userId,
          encodeStoredEntry(entry, this.options.instanceId),
          encodeMember(entry),
          shouldAnnounce ? '1' : '0',
          ...fenceArgs,
          ...this.eventArgs(room, { type: 'JOIN', userId: entry.userId, roles: entry.roles, sessionId: entry.sessionId, reason: null, at: Date.now() }),
        ],
      );
      if (envelopes === -1) throw new Error("fenced: this instance's generation is not the live one (it joins again, and its sessions are repaired then)");
      this.joining.delete(key);
      this.announced.add(key);
      await this.publishFinished(room, envelopes);
    } catch (err) {
      this.hasFailedStep = true;
      if (this.joining.delete(key)) await this.countLocal(room, -1).catch(() => undefined);
      throw err;
    }
  }

  /** ARGV[1..4] of every script that announces (include/presence-announce.lua): the limits, and whether the script PUBLISHes. */
  private announcing(): (string | number)[] {
    return [SEQ_TTL_SECONDS, LOG_LENGTH, LOG_TTL_SECONDS, this.isSharded ? '0' : '1'];
  }

  /** Channel/envelope pairs for the room and its companion; each envelope's body waits for `seq}`. */
  private eventArgs(room: string, body: Omit<PresenceEventBody, 'seq'>): (string | Buffer)[] {
    const json = JSON.stringify(body);
    const bodyPrefix = Buffer.from(`${json.slice(0, -1)},"seq":`);
    const args: (string | Buffer)[] = [];
    const companion = this.options.matcher.companionOf(room);
    for (const destination of companion === undefined ? [room] : [room, companion]) {
      args.push(
        this.options.keys.destinationChannel(destination),
        encodeEnvelope({
          // Not this instance's id: the relay delivers it here too, in the channel's order.
          origin: `presence@${this.options.instanceId}`,
          messageId: `${this.options.messageIdPrefix}-p${++this.messageSeq}`,
          destination,
          routeKey: destination,
          headers: presenceEventHeaders(body.type),
          body: bodyPrefix,
        }),
      );
    }
    return args;
  }

  /** On a Cluster the script could not publish (another slot): its finished envelopes go out here. */
  private async publishFinished(room: string, envelopes: unknown): Promise<void> {
    if (!this.isSharded || !Array.isArray(envelopes)) return;
    const companion = this.options.matcher.companionOf(room);
    const destinations = companion === undefined ? [room] : [room, companion];
    for (let i = 0; i < envelopes.length; i++) {
      await this.redis.spublish(this.options.keys.destinationChannel(destinations[i]!), envelopes[i] as Buffer);
    }
  }

  private roomKeys(room: string): [string, string, string, string] {
    const base = `${this.prefix}presence:{${room}}`;
    return [`${base}:sessions`, `${base}:users`, `${base}:members`, `${base}:seq`];
  }

  private instanceRoomsKey(): string {
    return this.instanceRoomsKeyOf(this.options.instanceId);
  }

  private instanceRoomsKeyOf(instanceId: string): string {
    return `${this.prefix}presence:instance:{${instanceId}}:rooms`;
  }
}
