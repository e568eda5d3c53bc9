// What this instance does with its own sessions when membership (membership.ts) learns
// something about it: reaped (fenced), its liveness lease run out, or back after its
// liveness key was gone or Redis lost its data. The same restore also follows every
// reconnect, once membership has answered "was I reaped?".

import type { Logger } from 'pino';
import type { LocalSessions } from '../shared-state';
import type { PresenceViews } from './presence-views';
import type { RedisPresence } from './redis-presence';
import type { RedisQueues } from './redis-queues';
import type { RedisRegistry } from './redis-registry';

const FENCED_TEXT = 'this instance was out of touch with the others and its sessions were taken for lost; reconnect';
const LEASE_LOST_TEXT = 'this instance lost touch with Redis: the session limit cannot be kept; reconnect';

export interface ReactionDeps {
  local: LocalSessions;
  registry: RedisRegistry;
  queues: RedisQueues;
  presence: RedisPresence;
  views: PresenceViews;
  logger: Logger;
}

export function membershipReactions({ local, registry, queues, presence, views, logger }: ReactionDeps) {
  let isRepairing = false;
  return {
    /**
     * This instance's generation was reaped: its sessions were (or are being) reported lost and
     * their users may have connected elsewhere; keeping them would make duplicates. Every one
     * is closed (UNAVAILABLE, reason instance-fenced); clients reconnect.
     */
    onFenced(): void {
      const closed = local.kickUser(undefined, 'UNAVAILABLE', FENCED_TEXT, 'instance-fenced');
      logger.warn({ closed }, "closed the sessions of this instance's reaped generation");
    },

    /** No refresh for a liveness TTL: the sessions under a session limit (a decision across instances) are closed. */
    onLeaseLost(): void {
      let closed = 0;
      for (const sessionId of registry.limitedSessionIds()) {
        if (local.kick(sessionId, 'UNAVAILABLE', LEASE_LOST_TEXT, 'instance-fenced')) closed++;
      }
      if (closed > 0) logger.warn({ closed }, 'closed the sessions under a session limit: the liveness lease ran out');
    },

    /**
     * Membership holds again (after a reconnect, a fence and re-join, or a liveness key found
     * gone): queues read again, the registry agrees with the live sessions (written again
     * through their policies when Redis lost its data), presence is repaired; after a data loss
     * the rooms are audited, since a dead instance's members went with the data, with no LEAVE
     * and nobody to reap them. Rejects when the registry could not be made to agree (presence is
     * repaired either way): the caller tries again.
     */
    async restore(isNewRedis: boolean): Promise<void> {
      queues.resumeAsMember();
      // Each step on its own: a registry that fails to reconcile must not keep presence stale.
      const registryStep = isNewRedis ? registry.rebuild() : registry.reconcile();
      await registryStep.catch((err: unknown) => {
        logger.warn({ err }, 'could not reconcile the registry; tried again on the next heart-beat or refresh');
      });
      await presence.repair(isNewRedis);
      if (isNewRedis) views.auditAll();
      await registryStep; // the registry's failure, if any, once the other steps ran
    },

    /**
     * A presence step that failed while Redis stayed connected (a reply that timed out) is
     * repaired on a later tick (`mayWrite`: joined, and connected), one repair at a time.
     */
    repairPresenceIfNeeded(mayWrite: boolean, isSameRedis: () => Promise<boolean>): Promise<void> | undefined {
      if (isRepairing || !presence.needsRepair || !mayWrite) return undefined;
      isRepairing = true;
      // Not while Redis may be a new one membership has not noticed yet: a repair that takes
      // Redis for the old one drops the LEAVEs it forgot (taken for told by a reaper), and
      // nobody would tell them. Membership's restore repairs it, knowing.
      return isSameRedis()
        .then((isSame) => (isSame ? presence.repair(false) : undefined))
        .catch((err: unknown) => logger.debug({ err }, 'presence repair failed; tried again'))
        .finally(() => (isRepairing = false));
    },
  };
}
