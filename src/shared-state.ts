// What a broker instance shares with the others: who is connected (the registry), logouts
// (revocations), rooms (the presence store), the other instances' sessions (remote kicks),
// session events that must outlive it (outboxes) and the list of instances. One interface,
// two implementations chosen once by server.ts: in memory for one process (embeddedState,
// below), or in Redis for several (src/cluster/cluster-node.ts, loaded only then). Nothing
// else asks which one it got.

import type { Logger } from 'pino';
import { MemoryRevocations } from './auth/revocation';
import type { RevocationStore } from './auth/revocation';
import type { SharedOutboxes } from './backend/event-outbox';
import type { Router } from './broker/router';
import { MemoryPresenceStore } from './presence/memory-presence';
import type { PresenceStore, RoomMatcher, SessionEntry } from './presence/presence';
import { singleInstance } from './registry/instances';
import type { InstanceDirectory, InstanceReport } from './registry/instances';
import { MemoryRegistry } from './registry/memory-registry';
import type { SessionRegistry } from './registry/registry';
import { NO_OTHER_INSTANCES } from './session/admin';
import type { RemoteSessions } from './session/admin';
import type { StompErrorCode } from './session/errors';
import type { DisconnectReason, LifecycleEvents } from './session/events';

/** With Redis: its state as this instance sees it, for readiness and /metrics. */
export interface SharedHealth {
  /** Cut off from Redis now (local delivery goes on; CONNECTs needing a session limit are refused). */
  isDegraded: boolean;
  reason: string | undefined;
  /** Connections to Redis made again after a loss (not the first one). */
  reconnects: number;
  /** Round trips of a PING sent every instance heart-beat. */
  redisLatency: { lastMs: number; sumMs: number; count: number };
  relay: { published: number; dropped: number; received: number };
}

export interface SharedState {
  readonly registry: SessionRegistry;
  readonly revocations: RevocationStore;
  readonly presenceStore: PresenceStore;
  /** The sessions of the other instances. */
  readonly remote: RemoteSessions;
  /** Where the backend's session events wait; asked for only when the backend hooks are on (src/backend loads then). */
  eventOutboxes(): Promise<SharedOutboxes>;
  /** Every instance with its last report (GET /api/instances, the dashboard). */
  readonly instances: InstanceDirectory;
  /** Redis as this instance sees it; undefined in one process (nothing to be cut off from). */
  health(): SharedHealth | undefined;
  /** Leave (this instance's sessions were closed first): forget what is this instance's, close connections. */
  stop(): Promise<void>;
}

/** This instance's sessions, as the shared state reaches them (the session table). */
export interface LocalSessions {
  /** Close a session of this instance; false if it is not here. */
  kick(sessionId: string, code: StompErrorCode, message: string, reason: DisconnectReason): boolean;
  /** Close every connected session of a user (of every user: undefined); returns how many. */
  kickUser(userId: string | undefined, code: StompErrorCode, message: string, reason: DisconnectReason): number;
}

/** What presence on this instance knows of its own sessions (the tracker), for a store that repairs from it. */
export interface LocalPresence {
  /** This instance's sessions in rooms, by room. */
  entries(): Map<string, SessionEntry[]>;
  isInRoom(sessionId: string, room: string): boolean;
}

export interface SharedStateDeps {
  instanceId: string;
  revocationTtlSeconds: number;
  /** Queue limits: MAX_QUEUE_MESSAGES undelivered per queue, MAX_QUEUES in all. */
  maxQueueMessages: number;
  maxQueues: number;
  router: Router;
  events: LifecycleEvents;
  logger: Logger;
  /** Which destinations are rooms (presence). */
  presenceRooms: RoomMatcher;
  /** Prefix of the ids of the presence messages this instance makes. */
  messageIdPrefix: string;
  local: LocalSessions;
  localPresence: LocalPresence;
  /** This instance's totals (with Redis, published with each liveness refresh). */
  report: () => InstanceReport;
}

/** One process: everything in memory, nobody else to reach. */
export function embeddedState(deps: SharedStateDeps): SharedState {
  const { router } = deps;
  return {
    registry: new MemoryRegistry(),
    revocations: new MemoryRevocations(deps.revocationTtlSeconds * 1000),
    // Rooms are topics (config refuses other patterns): a topic publish is done at once, nothing to wait for.
    presenceStore: new MemoryPresenceStore((message) => void router.publish(message), deps.presenceRooms, deps.messageIdPrefix),
    remote: NO_OTHER_INSTANCES,
    eventOutboxes: async () => new (await import('./backend/event-outbox')).MemoryOutboxes(),
    instances: singleInstance(deps.report),
    health: () => undefined,
    stop: async () => undefined,
  };
}
