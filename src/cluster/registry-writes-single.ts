// Registry writes on a single Redis: the whole registration of a session is one script
// (registry-register.lua: the writer's generation checked, dead holders judged, dropped and told,
// the policy decided, the record and every index written, evicted holders told through their
// instance's inbox), and so is its removal (registry-unregister.lua). Nothing is ever
// half-written, and a fenced generation writes nothing.

import type { SessionRecord } from '../registry/registry';
import { kickCommandPrefix } from './control';
import { LuaScript } from './lua';
import { INBOX_TTL_SECONDS } from './membership';
import { DEAD_HOLDER_TEXT, REPLACED_TEXT } from './registry-texts';
import { registrationReply } from './registry-writes';
import type { RegistrationReply, RegistrationRequest, RegistryWrites, RegistryWritesOptions } from './registry-writes';
import { hashOfPairs, parseSessionHash, sessionHashFields } from './session-hash';

const DEAD_HOLDER_KICK = kickCommandPrefix('UNAVAILABLE', DEAD_HOLDER_TEXT);
const REPLACED_KICK = kickCommandPrefix('SESSION_REPLACED', REPLACED_TEXT);

export class SingleRedisRegistryWrites implements RegistryWrites {
  readonly leavesEvictedUntold = false;
  readonly judgesDeadHolders = true;
  private readonly options: RegistryWritesOptions;
  private readonly registerScript: LuaScript;
  private readonly unregisterScript: LuaScript;

  constructor(options: RegistryWritesOptions) {
    this.options = options;
    this.registerScript = new LuaScript(options.redis, 'registry-register', [6]);
    this.unregisterScript = new LuaScript(options.redis, 'registry-unregister', [4]);
  }

  async register({ record, max, mode, dead, mayWait }: RegistrationRequest): Promise<RegistrationReply> {
    const { keys, sessionTtlSeconds } = this.options;
    const fence = this.options.writer()?.fence;
    const reply = await this.registerScript[mayWait === true ? 'runGathered' : 'run'](
      [keys.user(record.userId), keys.session(record.sessionId), keys.allSessions, keys.instanceSessions(record.instanceId), keys.instanceUsers(record.instanceId), fence?.key ?? keys.instance(record.instanceId)],
      [
        record.sessionId,
        record.connectedAt,
        max,
        mode,
        sessionTtlSeconds,
        keys.sessionPrefix,
        keys.instancePrefix,
        fence?.generation ?? '',
        DEAD_HOLDER_KICK,
        REPLACED_KICK,
        INBOX_TTL_SECONDS,
        dead === 'judge' ? -1 : dead.length,
        ...(dead === 'judge' ? [] : dead),
        ...sessionHashFields(record),
      ],
    );
    return registrationReply(reply);
  }

  async unregister(sessionId: string, instanceId: string): Promise<SessionRecord | undefined> {
    const { keys } = this.options;
    const fields = await this.unregisterScript.run([keys.session(sessionId), keys.allSessions, keys.instanceSessions(instanceId), keys.instanceUsers(instanceId)], [sessionId, keys.userPrefix]);
    return parseSessionHash(sessionId, hashOfPairs(fields));
  }
}
