// "Is this holder's instance dead?", as the registry asks it when a user is at the session
// limit: a holder whose record is gone, or whose instance's liveness key has expired, no
// longer counts. The one place this judgement is made; the registry's scripts only apply it
// (they are handed the dead holders). Should such an instance refresh before it is reaped
// (a stall just past its TTL), its registry finds the dropped session gone on its next
// refresh and closes it: the registry is the truth.

import type { RedisKeys } from './keys';
import type { RedisConnection } from './redis-client';

/** What the judgement needs of membership (membership.ts). */
export interface HolderJudge {
  /**
   * Whether another instance may be taken for dead now: not just after this instance's Redis
   * connection came back, before the others had a TTL to refresh their liveness keys.
   */
  readonly mayJudgeOthers: boolean;
  /** Declare dead those of `instanceIds` that have no connection to Redis any more; whether any was. */
  forgetVanished(instanceIds: readonly string[]): Promise<boolean>;
}

export class DeadHolders {
  constructor(
    private readonly redis: RedisConnection,
    private readonly keys: RedisKeys,
    private readonly instanceId: string,
    private readonly judge: () => HolderJudge | undefined,
  ) {}

  /** Whether holders may be judged now (membership's say; true for a registry used without it). */
  get mayJudge(): boolean {
    return this.judge()?.mayJudgeOthers !== false;
  }

  /** The user's sessions whose record is gone or whose instance's liveness key expired. */
  async of(userId: string): Promise<string[]> {
    if (!this.mayJudge) return [];
    const holders = await this.redis.zrange(this.keys.user(userId), 0, -1);
    if (holders.length === 0) return [];
    const instances = await this.instancesOf(holders);
    const distinct = [...new Set(instances.filter((i): i is string => i !== null && i !== this.instanceId))];
    const aliveFlags = await Promise.all(distinct.map((id) => this.redis.exists(this.keys.instance(id))));
    const alive = new Set(distinct.filter((_, i) => aliveFlags[i] === 1));
    alive.add(this.instanceId);
    return holders.filter((_, i) => instances[i] === null || !alive.has(instances[i]!));
  }

  /**
   * Holders' instances that vanished a moment ago (no connection to Redis any more, their
   * liveness key not expired yet) are declared dead now (membership.forgetVanished), so a
   * decision made again no longer counts their holders. Whether any was.
   */
  async forgetVanished(holderIds: readonly string[]): Promise<boolean> {
    const judge = this.judge();
    if (holderIds.length === 0 || judge === undefined || !judge.mayJudgeOthers) return false;
    const instances = await this.instancesOf(holderIds);
    const others = [...new Set(instances.filter((i): i is string => i !== null && i !== this.instanceId))];
    return others.length > 0 && (await judge.forgetVanished(others));
  }

  private instancesOf(sessionIds: readonly string[]): Promise<(string | null)[]> {
    return Promise.all(sessionIds.map((id) => this.redis.hget(this.keys.session(id), 'instanceId')));
  }
}
