// Sessions of other instances, as this one deals with them: closing them (a kick, a replace,
// a logout), acting on what the others ask of this instance's sessions, and reporting lost
// those of a dead instance this one reaped.
//
// A kick travels twice: through the holder's inbox (kept in Redis, read every heart-beat) and
// over pub/sub (at once); acting twice closes nothing twice. The session also leaves the
// registry here: should both messages be lost, the holder's registry check closes it anyway
// (a session the registry no longer holds is closed).

import type { Logger } from 'pino';
import type { SessionRecord } from '../registry/registry';
import type { RemoteSessions } from '../session/admin';
import type { LifecycleEvents, SessionInfo } from '../session/events';
import type { LocalSessions } from '../shared-state';
import { controlCode } from './control';
import type { ControlMessage } from './control';
import type { RedisRegistry } from './redis-registry';
import type { RedisRelay } from './redis-relay';

/** Closing sessions that live on other instances. */
export function redisRemoteSessions(registry: RedisRegistry, relay: RedisRelay, instanceId: string): RemoteSessions {
  return {
    kickSession: async (sessionId, code, message) => {
      const control: ControlMessage = { type: 'kick', sessionId, code: controlCode(code), message };
      const holder = await registry.get(sessionId).catch(() => undefined);
      if (holder !== undefined) {
        await registry.tell(sessionId, control.code, message).catch(() => false);
        await registry.unregister(sessionId, holder.instanceId).catch(() => undefined);
      }
      return relay.publishControl(control);
    },
    kickUser: async (userId, code, message, revokedAt) => {
      const control: ControlMessage = { type: 'kick-user', userId, code: controlCode(code), message, ...(revokedAt !== undefined ? { revokedAt } : {}) };
      const holders = (await registry.sessionsOf(userId).catch(() => [])).filter((r) => r.instanceId !== instanceId);
      for (const holderInstance of new Set(holders.map((r) => r.instanceId))) await registry.pushInbox(holderInstance, control).catch(() => undefined);
      for (const holder of holders) await registry.unregister(holder.sessionId, holder.instanceId).catch(() => undefined);
      return relay.publishControl(control);
    },
  };
}

/** What another instance asked of this one's sessions (over pub/sub or through the inbox), done. */
export function controlActor(local: LocalSessions, revocations: { remember(userId: string, atMs: number): void }): (control: ControlMessage) => void {
  return (control) => {
    const reason = control.code === 'LOGGED_OUT' ? 'logged-out' : 'kicked';
    if (control.type === 'kick') {
      local.kick(control.sessionId, control.code, control.message, reason);
      return;
    }
    if (control.revokedAt !== undefined) revocations.remember(control.userId, control.revokedAt);
    local.kickUser(control.userId, control.code, control.message, reason);
  };
}

/**
 * A dead instance's session, removed by this instance's reaper, reported once as a
 * disconnect with reason `instance-lost`, with what the registry knows of it (not its STOMP
 * version; an anonymous session is registered under its generated user id, unlimited).
 */
export function lostSessionReporter(events: LifecycleEvents, logger: Logger): (record: SessionRecord) => void {
  return (record) => {
    try {
      logger.info({ sessionId: record.sessionId, userId: record.userId, deadInstance: record.instanceId }, 'session lost with its instance');
      events.emit('disconnect', { session: lostSessionInfo(record), reason: 'instance-lost' });
    } catch (err) {
      logger.error({ err, sessionId: record.sessionId }, 'instance-lost handler failed');
    }
  };
}

export function lostSessionInfo(record: SessionRecord): SessionInfo {
  return {
    sessionId: record.sessionId,
    userId: record.userId,
    roles: record.roles,
    isAnonymous: false,
    transport: record.transport === 'ws' ? 'ws' : 'tcp',
    remoteAddress: record.remoteAddress,
    version: undefined,
    connectedAt: record.connectedAt,
  };
}
