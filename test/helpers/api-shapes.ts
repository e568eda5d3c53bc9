// The JSON bodies of the HTTP API, as the tests read them: made from the types the routes
// serialize where there is one, so a change of shape breaks the tests when they compile.

import type { sessionDetails } from '../../src/http/routes/sessions';
import type { QueueStat } from '../../src/broker/queue-backend';
import type { Member } from '../../src/presence/presence';
import type { InstanceView } from '../../src/registry/instances';
import type { OnlineUsersPage, RegistryStats } from '../../src/registry/registry';
import type { KickOutcome } from '../../src/session/admin';

/** Fastify's error body (4xx, 5xx). */
export interface ApiError {
  statusCode: number;
  error: string;
  message: string;
}

/** GET /api/session/:sessionId, and each session of the listings. */
export type SessionDetails = ReturnType<typeof sessionDetails>;

/** GET /api/sessions: details a page at a time. */
export interface SessionsPage {
  totalCount: number;
  sessions: SessionDetails[];
  nextCursor: string | null;
}

/** GET /api/session/all: ids a page at a time. */
export interface SessionIdsPage {
  totalCount: number;
  sessions: string[];
  nextCursor: string | null;
}

/** GET /api/session/user/:userId/online; /api/session/user/:userId adds the sessions. */
export interface UserOnline {
  userId: string;
  isOnline: boolean;
  sessionCount: number;
}

export interface UserSessions extends UserOnline {
  sessions: SessionDetails[];
}

/** GET /api/users/online. */
export interface OnlineUsers {
  users: OnlineUsersPage['users'];
  nextCursor: string | null;
}

/** GET /api/session/stats. */
export type SessionStats = RegistryStats & { timestamp: number };

/** POST /api/session/:sessionId/refresh. */
export interface Refreshed {
  sessionId: string;
  userId: string;
  refreshed: true;
  ttlSeconds: number | null;
}

/** DELETE /api/session/:sessionId and /api/session/user/:userId. */
export type Kicked = KickOutcome & { sessionId?: string; userId?: string };

export interface Room {
  destination: string;
  members: Member[];
}

/** GET /api/presence?destination=… */
export type Presence = Room;

/** GET /api/rooms. */
export interface Rooms {
  rooms: Room[];
}

/** GET /api/instances. */
export interface Instances {
  instances: InstanceView[];
  timestamp: number;
}

/** GET /api/queues. */
export interface Queues {
  queues: QueueStat[];
}

/** What the /api/feed events carry: everything the dashboard shows but the sessions table. */
export interface Overview {
  stats: RegistryStats;
  instances: InstanceView[];
  queues: QueueStat[];
  rooms: Room[];
  timestamp: number;
}

/** POST /api/publish. */
export interface Published {
  messageId: string;
  destination: string;
  kind: 'topic' | 'queue' | 'user';
  bodyBytes: number;
}

/** GET /readyz (200 ready, 503 not-ready with the reason). */
export interface Readiness {
  status: 'ready' | 'not-ready';
  reason?: string;
}

/** GET /api/openapi.json: the parts of an OpenAPI 3 document the tests read. */
export interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Partial<Record<string, OpenApiOperation>>>;
  components: { securitySchemes: Partial<Record<string, { scheme: string }>> };
}

export interface OpenApiOperation {
  responses: Partial<Record<string, unknown>>;
  security?: Record<string, string[]>[];
  parameters?: { name: string }[];
  requestBody?: { content: Partial<Record<string, { schema: { properties: Partial<Record<string, unknown>> } }>> };
}
