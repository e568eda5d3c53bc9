// Registry writes on a Redis Cluster, where a script may only touch keys of one slot: each
// step is atomic in its own slot, in an order that leaves nothing behind a crash but entries
// of this instance, which the reaper removes when the instance's liveness key expires:
//   1. `instance:{me}:sessions` gets the id (the reaper's list of what this instance holds),
//   2. the session hash is written (with its TTL),
//   3. registry-bind.lua adds the id to `user:{userId}` (the policy decision, on the user's slot),
//   4. `sessions:all` and `instance:{me}:users` are updated.
// A refusal undoes 2 and 1. Removal runs the steps in reverse; whoever deletes the session
// hash (DEL returns 1) owns the disconnect, so racing reapers report it once. Step 1 is the
// fence (instance-claim.lua): the instance's set and its liveness key share its hash tag, so
// one script checks the writer's generation and claims the entry; a fenced generation writes
// nothing. What stays open on a Cluster: a writer stalled between step 1 and step 3 while it
// is reaped writes its user entry after the reap; it closes that session itself when it
// resumes and finds it was reaped (or, killed, its holder is judged dead).

import type { SessionRecord } from '../registry/registry';
import { InstanceClaim } from './instance-claim';
import { LuaScript } from './lua';
import { registrationReply } from './registry-writes';
import type { RegistrationReply, RegistrationRequest, RegistryWrites, RegistryWritesOptions } from './registry-writes';
import { parseSessionHash, sessionHashFields } from './session-hash';

export class ClusterRegistryWrites implements RegistryWrites {
  readonly leavesEvictedUntold = true;
  /** A script may not read other slots here: the caller judges (dead-holders.ts). */
  readonly judgesDeadHolders = false;
  private readonly options: RegistryWritesOptions;
  private readonly bindScript: LuaScript;
  private readonly forgetOnInstanceScript: LuaScript;
  private readonly claim: InstanceClaim;

  constructor(options: RegistryWritesOptions) {
    this.options = options;
    this.bindScript = new LuaScript(options.redis, 'registry-bind', [1]);
    this.forgetOnInstanceScript = new LuaScript(options.redis, 'registry-forget-on-instance', [2]);
    this.claim = new InstanceClaim(options.redis);
  }

  async register({ record, max, mode, dead }: RegistrationRequest): Promise<RegistrationReply> {
    const { keys, redis, sessionTtlSeconds } = this.options;
    const writer = this.options.writer();
    if (writer !== undefined && !writer.isJoined) return [-1];
    const sessionKey = keys.session(record.sessionId);
    // Step 1 is the fence: a generation that is not the live one writes nothing at all.
    const claimed = await this.claim.claim(keys.instanceSessions(record.instanceId), keys.instance(record.instanceId), writer?.fence, record.sessionId);
    if (claimed === -1) return [-1];
    const isNew = claimed === 1;
    await redis
      .multi()
      .hset(sessionKey, ...sessionHashFields(record))
      .expire(sessionKey, sessionTtlSeconds)
      .exec();
    const reply = registrationReply(await this.bindScript.run([keys.user(record.userId)], [record.sessionId, record.connectedAt, max, mode, ...(dead === 'judge' ? [] : dead)]));
    if (reply[0] === 1) {
      await Promise.all([redis.sadd(keys.allSessions, record.sessionId), isNew ? redis.hincrby(keys.instanceUsers(record.instanceId), record.userId, 1) : Promise.resolve(0)]);
    } else {
      await redis.del(sessionKey);
      await redis.srem(keys.instanceSessions(record.instanceId), record.sessionId);
    }
    return reply;
  }

  async unregister(sessionId: string, instanceId: string): Promise<SessionRecord | undefined> {
    const { keys, redis } = this.options;
    const record = parseSessionHash(sessionId, await redis.hgetall(keys.session(sessionId)));
    if (record !== undefined) await redis.zrem(keys.user(record.userId), sessionId);
    const deleted = await redis.del(keys.session(sessionId));
    await Promise.all([
      redis.srem(keys.allSessions, sessionId),
      this.forgetOnInstanceScript.run([keys.instanceSessions(instanceId), keys.instanceUsers(instanceId)], [sessionId, deleted === 1 && record ? record.userId : '']),
    ]);
    return deleted === 1 ? record : undefined;
  }
}
