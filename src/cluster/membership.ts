// One instance's membership in the cluster: announce, generation, "was I reaped?", the reap
// of dead instances as a compare-and-set, and the instance's inbox of commands. Registry,
// queues and presence learn of a lost instance through one hook (onInstanceLost) and of
// this instance's own fencing through another (onFenced).
//
// Generations. An instance runs under a generation (a number that only grows: the clock in
// ms when it joined). Its liveness key `instance:{id}` holds the generation with a TTL of
// three heart-beats; every heart-beat it is written again by membership-refresh.lua, which
// first looks for the reaped marker. A survivor that finds the key gone claims the reap
// (`instance:{id}:reaper`, NX) and marks the generation reaped (membership-reap-mark.lua:
// only if the key is still gone, atomically with the refresh). So exactly one of the two
// happens: the instance's refresh (it lives on), or the mark (it is dead for good, and its
// next refresh returns 'reaped').
//
// Fencing. An instance that learns it was reaped (on the first tick or reconnect after a
// stall or a cut; nothing else is written before that check) closes every local session
// with ERROR UNAVAILABLE (onFenced), finishes the reap of its old generation itself unless a
// survivor is at it, and only then joins again under a new generation: what the reap gives
// back (sessions, queue messages) cannot be mixed up with what the new generation holds.
// Scripts that write for an instance on a single Redis compare the liveness key with the
// writer's generation (`fence`), so a write issued before the check lands nowhere.
//
// Redis losing its data is told apart by `incarnation`, a random value written once: a
// missing or changed value means every key is new, nobody was reaped, and the live sessions
// are registered again (through the session policy).

import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { NO_COUNTERS, encodeInstanceReport, parseInstanceReport } from '../registry/instances';
import type { InstanceReport, InstanceView } from '../registry/instances';
import type { RedisKeys } from './keys';
import { LuaScript } from './lua';
import { isCluster } from './redis-client';
import type { RedisConnection } from './redis-client';
import type { InstanceLossHandler, LossReport } from './instance-loss';

export interface MembershipOptions {
  redis: RedisConnection;
  keys: RedisKeys;
  instanceId: string;
  heartbeatMs: number;
  /**
   * What this instance reaps a dead generation through, in order (the registry first: its
   * sessions are reported lost before anything else they held is given back).
   */
  members: readonly InstanceLossHandler[];
  /** This instance's generation was reaped: close every local session now (synchronously). */
  onFenced?(): void;
  /**
   * No refresh went through for a liveness TTL: others may already take this instance for
   * dead and admit its users elsewhere. Close the sessions whose policy needs a decision
   * across instances (synchronously); the rest live on until the instance learns more.
   */
  onLeaseLost?(): void;
  /**
   * The membership holds again after its liveness key was gone: `wasReaped` after a fence
   * and a re-join (the local sessions are closed), otherwise the key expired without a reap
   * or Redis lost its data (the local sessions live on and are registered again).
   */
  onLivenessLost(wasReaped: boolean, isNewRedis: boolean): Promise<void>;
  /** A command from this instance's inbox (validated by the caller). */
  onCommand?(command: unknown): void;
  /** This instance's report, written with every refresh so that every instance can list the others' (the dashboard). */
  report?(): InstanceReport;
  logger: Logger;
}

/** `promise`, or a rejection after `ms` (the promise itself goes on). */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from Redis within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** How long an instance's connections must stay gone before it is declared dead without waiting for its TTL. */
const VANISHED_CONFIRM_MS = 550;
/** How many more times it must be found absent. */
const VANISHED_LOOKS = 2;
/** One CLIENT LIST serves every caller for this long. */
const CLIENT_LIST_REUSE_MS = 100;

/** How long a claim on a reap lasts unless the reaper extends it. */
export const REAP_CLAIM_MS = 30_000;

/** The claim on a reap was lost (the reaper stalled past it): the reap stops where it is. */
class ReapAborted extends Error {}
/**
 * How long the reaped marker lasts: past the reap's end (its claim, extended while it runs);
 * after it, an instance that wakes finds its generation key gone, which says the same.
 */
const REAPED_MARKER_SECONDS = 600;
/** Inbox entries taken per round trip. */
const INBOX_BATCH = 100;
/** An inbox nobody reads (its instance died and was reaped) is gone after this. */
export const INBOX_TTL_SECONDS = 3600;

export type MembershipState = 'joining' | 'joined' | 'fenced';

export class InstanceMembership {
  private readonly options: MembershipOptions;
  private readonly isSingle: boolean;
  private readonly refreshScript: LuaScript;
  private readonly markScript: LuaScript;
  private readonly finishScript: LuaScript;
  private readonly keepClaimScript: LuaScript;
  private readonly forgetScript: LuaScript;
  private isReaping = false;
  private timer: NodeJS.Timeout | undefined;
  private isTicking = false;
  private generationValue = Date.now();
  private stateValue: MembershipState = 'joining';
  /** Redis's incarnation as this instance last saw it (and has registered its sessions in). */
  private incarnation: string | undefined;
  /** A new incarnation seen, taken as known once the sessions are registered again. */
  private nextIncarnation: string | undefined;
  /** When (performance.now()) the last refresh that went through was sent: the lease runs a TTL from then. */
  private renewedAt = performance.now();
  private isLeaseLost = false;
  private readonly startedAt = Date.now();
  private clientList: { at: number; names: Promise<Set<string>> } | undefined;
  /** When (performance.now()) the connection to Redis was last (re)made: the others get a TTL from then. */
  private connectedAt = -Infinity;
  private hasJoined = false;

  constructor(options: MembershipOptions) {
    this.options = options;
    this.isSingle = !isCluster(options.redis);
    this.refreshScript = new LuaScript(options.redis, 'membership-refresh', [3, 4]);
    this.markScript = new LuaScript(options.redis, 'membership-reap-mark', [3]);
    this.finishScript = new LuaScript(options.redis, 'membership-reap-finish', [4, 5]);
    this.keepClaimScript = new LuaScript(options.redis, 'membership-claim-keep', [1]);
    this.forgetScript = new LuaScript(options.redis, 'membership-forget', [1]);
  }

  get ttlMs(): number {
    return this.options.heartbeatMs * 3;
  }

  get generation(): number {
    return this.generationValue;
  }

  get state(): MembershipState {
    return this.stateValue;
  }

  /** Whether this instance may write for itself now (joined, not fenced). */
  get isJoined(): boolean {
    return this.stateValue === 'joined';
  }

  /** What a script compares before writing for this instance: the liveness key must hold this value. */
  get fence(): { key: string; generation: string } {
    return { key: this.options.keys.instance(this.options.instanceId), generation: String(this.generationValue) };
  }

  /** Join (or find out that an earlier life of this id must be reaped first), then check every heart-beat. */
  async start(): Promise<void> {
    this.timer = setInterval(() => void this.tick(), this.options.heartbeatMs);
    this.timer.unref();
    await this.check();
  }

  /** The same check as every tick: after a reconnect, before anything else is written. */
  async announce(): Promise<void> {
    if (this.hasJoined) this.connectedAt = performance.now(); // a reconnect, not the first join
    await this.check();
  }

  /**
   * Whether others may be judged dead now. Just after this instance's connection came back
   * (Redis restarted, or this instance was cut off), the others' liveness keys may have
   * expired across the gap while they are alive and reconnecting too: they get a TTL to
   * refresh before anyone reaps them or drops their sessions.
   */
  get mayJudgeOthers(): boolean {
    return performance.now() - this.connectedAt > this.ttlMs;
  }

  /** Stop refreshing; with `forget`, remove this instance's keys (a graceful stop). */
  async stop(forget: boolean): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    if (!forget || this.stateValue !== 'joined') return;
    const { redis, keys, instanceId } = this.options;
    await redis.del(keys.instance(instanceId), keys.instanceSessions(instanceId), keys.instanceUsers(instanceId), keys.instanceGeneration(instanceId), keys.instanceInbox(instanceId), keys.instanceReport(instanceId));
    await redis.srem(keys.instances, instanceId);
  }

  /** One heart-beat: membership first (nothing is written before it), then the inbox, then the dead. */
  async tick(): Promise<void> {
    this.checkLease(); // before any await: after a pause, this runs before the sockets are read
    if (this.isTicking) return; // Redis is slow: the previous tick still runs
    this.isTicking = true;
    try {
      await within(this.check(), this.ttlMs); // a black-holed connection must not stop the ticks
      if (this.stateValue === 'joined') {
        await within(this.drainInbox(), this.ttlMs);
        this.reapInBackground();
      }
    } catch (err) {
      this.options.logger.debug({ err }, 'membership tick failed (Redis unavailable?)');
    } finally {
      this.isTicking = false;
    }
  }

  /** Reaps run beside the ticks: a long one must not stop this instance's own refreshes. */
  private reapInBackground(): void {
    if (this.isReaping) return;
    this.isReaping = true;
    this.reapDead()
      .catch((err: unknown) => this.options.logger.debug({ err }, 'reap failed (Redis unavailable?); tried again on a later tick'))
      .finally(() => (this.isReaping = false));
  }

  /** Refresh the membership; on 'reaped', fence and re-join; on a missing key or a new Redis, re-register. */
  private async check(): Promise<void> {
    if (this.stateValue === 'fenced') {
      await this.rejoinAfterReap();
      return;
    }
    const verdict = await this.refresh();
    if (verdict === 'reaped') {
      this.fenceNow();
      await this.rejoinAfterReap();
      return;
    }
    const wasJoining = this.stateValue === 'joining';
    const isNewRedis = await this.checkIncarnation();
    if (verdict === 'orphaned' && !wasJoining && !isNewRedis) {
      // Its reap finished while it was away (the marker has expired since): the same as 'reaped'.
      this.fenceNow();
      await this.rejoinAfterReap();
      return;
    }
    this.stateValue = 'joined';
    this.hasJoined = true;
    if (wasJoining) {
      if (isNewRedis) this.incarnation = this.nextIncarnation;
      return;
    }
    if (verdict !== 'ok' || isNewRedis) {
      this.options.logger.warn({ isNewRedis }, isNewRedis ? "Redis lost its data: registering this instance's sessions again" : "this instance's liveness key had expired without a reap: registering again");
      await this.options.onLivenessLost(false, isNewRedis);
      if (isNewRedis) this.incarnation = this.nextIncarnation;
    }
  }

  private async refresh(): Promise<string> {
    const { keys, instanceId } = this.options;
    const keyList = [keys.instance(instanceId), keys.reaped(instanceId), keys.instanceGeneration(instanceId)];
    if (this.isSingle) keyList.push(keys.instances);
    const sentAt = performance.now();
    const verdict = String(await this.refreshScript.run(keyList, [String(this.generationValue), this.ttlMs, instanceId]));
    if (verdict !== 'reaped') {
      this.renewedAt = sentAt;
      this.isLeaseLost = false;
      void this.options.redis.set(keys.instanceReport(instanceId), encodeInstanceReport(this.currentReport()), 'PX', this.ttlMs).catch(() => undefined);
    }
    if (!this.isSingle && verdict !== 'reaped') await this.options.redis.sadd(keys.instances, instanceId);
    return verdict;
  }

  /**
   * The lease: the liveness key set by a refresh sent at `renewedAt` expires no earlier than
   * a TTL later, so closing the limited sessions once that much time has passed without a
   * refresh closes them before any other instance can take this one for dead.
   */
  private checkLease(): void {
    if (this.stateValue !== 'joined' || this.isLeaseLost) return;
    if (performance.now() - this.renewedAt <= this.ttlMs) return;
    this.isLeaseLost = true;
    this.options.logger.warn({ sinceRefreshMs: Math.round(performance.now() - this.renewedAt) }, 'no liveness refresh for a TTL: the sessions under a session limit are closed (UNAVAILABLE) until Redis answers');
    try {
      this.options.onLeaseLost?.();
    } catch (err) {
      this.options.logger.error({ err }, 'closing the limited sessions after the lease ran out failed');
    }
  }

  /**
   * Every listed instance with its last report: this one's read live, the others' as they
   * wrote it with their latest refresh (how long ago: heartbeatAgeMs, from the key's TTL).
   */
  async instances(): Promise<InstanceView[]> {
    const { redis, keys, instanceId } = this.options;
    const self = this.self();
    const others = (await redis.smembers(keys.instances)).filter((id) => id !== instanceId).sort();
    const views = await Promise.all(
      others.map(async (id): Promise<InstanceView> => {
        const [value, ttlLeftMs] = await Promise.all([redis.get(keys.instanceReport(id)), redis.pttl(keys.instance(id))]);
        const isAlive = ttlLeftMs > 0;
        return {
          ...parseInstanceReport(id, value),
          isSelf: false,
          isAlive,
          heartbeatAgeMs: isAlive ? Math.max(0, this.ttlMs - ttlLeftMs) : this.ttlMs,
        };
      }),
    );
    return [self, ...views];
  }

  /** This instance, read live (no Redis read): degraded or not, by its own account. */
  self(): InstanceView {
    return { ...this.currentReport(), isSelf: true, isAlive: true, heartbeatAgeMs: 0 };
  }

  private currentReport(): InstanceReport {
    return this.options.report?.() ?? { instanceId: this.options.instanceId, startedAt: this.startedAt, reportedAt: Date.now(), isDegraded: false, degradedReason: null, counters: NO_COUNTERS };
  }

  /** Whether Redis is still the one this instance knew (read now; true before the first check). */
  async isSameRedis(): Promise<boolean> {
    const current = await this.options.redis.get(this.options.keys.incarnation);
    return this.incarnation === undefined || current === this.incarnation;
  }

  /** Whether Redis is not the one this instance knew (it restarted empty or lost the key). */
  private async checkIncarnation(): Promise<boolean> {
    const { redis, keys } = this.options;
    let current = await redis.get(keys.incarnation);
    if (current === null) {
      await redis.set(keys.incarnation, randomBytes(8).toString('hex'), 'NX');
      current = await redis.get(keys.incarnation);
    }
    const known = this.incarnation;
    if (known === undefined) {
      this.incarnation = current ?? undefined;
      return false;
    }
    if (known === current) return false;
    // Taken as known only once this instance's sessions are registered again (check()):
    // until then isSameRedis() says no, so no registry check takes the sessions not yet
    // written back for removed by someone else, and a failed rebuild is tried again.
    this.nextIncarnation = current ?? undefined;
    return true;
  }

  private fenceNow(): void {
    this.stateValue = 'fenced';
    this.options.logger.warn({ generation: this.generationValue }, 'this instance was taken for dead and reaped: its sessions are closed (UNAVAILABLE), it joins again under a new generation');
    try {
      this.options.onFenced?.();
    } catch (err) {
      this.options.logger.error({ err }, 'closing the sessions of a fenced generation failed');
    }
  }

  /**
   * Finish the reap of this instance's old generation (unless a survivor holds the claim:
   * then wait for it, next tick), then join under a new generation.
   */
  private async rejoinAfterReap(): Promise<void> {
    const { redis, keys, instanceId, logger } = this.options;
    const claimed = await redis.set(keys.reaping(instanceId), instanceId, 'PX', REAP_CLAIM_MS, 'NX');
    if (claimed !== 'OK') return;
    const reapedGeneration = (await this.markScript.run([keys.instance(instanceId), keys.reaped(instanceId), keys.instanceGeneration(instanceId)], [REAPED_MARKER_SECONDS])) as string | null; // the generation marked, or nothing to reap
    if (reapedGeneration !== null) {
      try {
        await this.reap(instanceId, reapedGeneration);
      } catch (err) {
        if (err instanceof ReapAborted) return; // taken over meanwhile: wait for that reap
        throw err;
      }
    } else {
      await redis.del(keys.reaping(instanceId));
    }
    this.generationValue = Math.max(Date.now(), Number(reapedGeneration ?? this.generationValue) + 1);
    this.stateValue = 'joining';
    const verdict = await this.refresh();
    if (verdict === 'reaped') return; // cannot be (the new generation is above the mark); try again next tick
    this.stateValue = 'joined';
    await redis.del(keys.reaped(instanceId));
    await this.checkIncarnation();
    logger.info({ generation: this.generationValue }, 'joined again under a new generation');
    await this.options.onLivenessLost(true, false);
  }

  /**
   * Instances among `instanceIds` with no connection to Redis any more (a killed process's
   * sockets close at once, long before its liveness key expires) are declared dead now:
   * their liveness key is deleted, so their sessions no longer count and the reaper takes
   * them on its next round. Absent at three looks over a second (ioredis's back-off is at
   * most a second): a connection blip is not a death; the key is deleted only if it is still
   * the value read first (the instance did not refresh meanwhile). An instance only cut off from Redis
   * is taken for dead too: its lease (a TTL from its last refresh) closes its limited
   * sessions at the latest then, and it is fenced when it reconnects.
   */
  async forgetVanished(instanceIds: readonly string[]): Promise<boolean> {
    const { redis, keys } = this.options;
    const absent = async (candidates: readonly string[]): Promise<string[]> => {
      const connected = await this.connectedInstanceNames();
      return candidates.filter((id) => !connected.has(`stompd:${id}`) && !connected.has(`stompd:${id}:sub`));
    };
    let vanished: string[];
    const seen = new Map<string, string | null>();
    try {
      for (const id of instanceIds) seen.set(id, await redis.get(keys.instance(id)));
      vanished = await absent(instanceIds);
      // Absent at three looks over a second: longer than ioredis's reconnect back-off (1 s at most).
      for (let look = 0; look < VANISHED_LOOKS && vanished.length > 0; look++) {
        await new Promise((resolve) => setTimeout(resolve, VANISHED_CONFIRM_MS));
        vanished = await absent(vanished);
      }
    } catch {
      return false; // CLIENT LIST not allowed (a managed Redis): the liveness TTL decides instead
    }
    let forgotten = 0;
    for (const id of vanished) {
      const value = seen.get(id);
      if (value !== null && value !== undefined) forgotten += Number(await this.forgetScript.run([keys.instance(id)], [value]));
    }
    return forgotten > 0;
  }

  /** Client names of every connection to Redis (every master on a Cluster), one listing per CLIENT_LIST_REUSE_MS. */
  private connectedInstanceNames(): Promise<Set<string>> {
    const now = Date.now();
    if (this.clientList !== undefined && now - this.clientList.at < CLIENT_LIST_REUSE_MS) return this.clientList.names;
    const names = this.listClientNames();
    this.clientList = { at: now, names };
    names.catch(() => (this.clientList = undefined));
    return names;
  }

  private async listClientNames(): Promise<Set<string>> {
    const redis = this.options.redis;
    const nodes = isCluster(redis) ? redis.nodes('master') : [redis];
    const lists = await Promise.all(nodes.map((node) => node.client('LIST') as Promise<string>));
    const names = new Set<string>();
    for (const list of lists) for (const match of list.matchAll(/ name=(\S+)/g)) names.add(match[1]!);
    return names;
  }

  /**
   * Take what other instances left for this one (kicks, replaces, logouts), oldest first: read,
   * act, then trim what was read. At least once: a reply lost on the way leaves the commands
   * for the next tick (acting twice closes nothing twice).
   */
  private async drainInbox(): Promise<void> {
    const { redis, keys, instanceId, logger } = this.options;
    const inbox = keys.instanceInbox(instanceId);
    for (;;) {
      const batch = await redis.lrange(inbox, 0, INBOX_BATCH - 1);
      if (batch.length === 0) return;
      for (const raw of batch) {
        let command: unknown;
        try {
          command = JSON.parse(raw);
        } catch {
          logger.warn('an inbox entry was not JSON: ignored');
          continue;
        }
        this.options.onCommand?.(command);
      }
      await redis.ltrim(inbox, batch.length, -1); // pushes made meanwhile are after these, and stay
      if (batch.length < INBOX_BATCH) return;
    }
  }

  /** Reap every listed instance whose liveness key is gone; returns how many sessions were reported. */
  async reapDead(): Promise<number> {
    const { redis, keys, instanceId } = this.options;
    let reported = 0;
    if (!this.mayJudgeOthers) return 0;
    for (const other of await redis.smembers(keys.instances)) {
      if (other === instanceId) continue;
      if ((await redis.exists(keys.instance(other))) === 1) continue;
      const claimed = await redis.set(keys.reaping(other), instanceId, 'PX', REAP_CLAIM_MS, 'NX');
      if (claimed !== 'OK') continue;
      const generation = (await this.markScript.run([keys.instance(other), keys.reaped(other), keys.instanceGeneration(other)], [REAPED_MARKER_SECONDS])) as string | null;
      if (generation === null) {
        await redis.del(keys.reaping(other)); // it refreshed in time: alive
        continue;
      }
      try {
        const report = await this.reap(other, generation);
        reported += report.sessions ?? 0;
        this.options.logger.info({ deadInstance: other, generation, ...report }, 'reaped a dead instance');
      } catch (err) {
        if (!(err instanceof ReapAborted)) throw err;
        this.options.logger.warn({ deadInstance: other }, 'a reap stopped: its claim ran out while this instance stalled (another takes over)');
      }
    }
    return reported;
  }

  /**
   * The reap of `deadId`'s generation `generation`, under this instance's claim: each member's
   * onInstanceLost in turn (sessions, then what else it held), then its sets and listing.
   * Between the members (and within a long one: ReapClaim.keep) the claim is checked and
   * extended: a reaper that stalled past it stops (ReapAborted) instead of acting on a
   * generation that joined since. Returns what the members reported, summed.
   */
  private async reap(deadId: string, generation: string): Promise<LossReport> {
    const claim = { keep: () => this.keepClaim(deadId) };
    const report: Record<string, number> = {};
    for (const member of this.options.members) {
      await this.keepClaim(deadId);
      for (const [what, count] of Object.entries((await member.onInstanceLost(deadId, generation, claim)) ?? {})) report[what] = (report[what] ?? 0) + count;
    }
    await this.keepClaim(deadId);
    await this.finish(deadId, generation);
    return report;
  }

  private async keepClaim(deadId: string): Promise<void> {
    const kept = await this.keepClaimScript.run([this.options.keys.reaping(deadId)], [this.options.instanceId, REAP_CLAIM_MS]);
    if (kept !== 1) throw new ReapAborted();
  }

  /** End a reap: the instance's sets go, and so does its listing unless it joined again meanwhile. */
  private async finish(deadId: string, generation: string): Promise<void> {
    const { redis, keys } = this.options;
    const keyList = [keys.instanceGeneration(deadId), keys.reaping(deadId), keys.instanceSessions(deadId), keys.instanceUsers(deadId)];
    if (this.isSingle) keyList.push(keys.instances);
    const forgotten = await this.finishScript.run(keyList, [generation, deadId]);
    if (!this.isSingle && forgotten === 1) await redis.srem(keys.instances, deadId);
  }
}
