// What an operator looks at (the dashboard reads only these and the other /api routes): the
// instances with their running totals, rooms with their members, sessions with their
// details a page at a time, and a live feed (server-sent events) carrying all of it at once
// every FEED_INTERVAL_MS. Everything is read from the shared state, so any instance answers
// the same in embedded and Redis mode.

import type { FastifyInstance } from 'fastify';
import type { HttpApiDeps } from '../api';
import { apiErrors, pageQuery, security, sessionDetailsSchema } from '../schemas';
import { sessionDetails } from './sessions';

/** How often the feed sends an overview: the dashboard's refresh. */
const FEED_INTERVAL_MS = 1000;
/** Rooms an overview lists at most (GET /api/rooms takes a limit). */
const FEED_ROOMS = 50;

const counts = { type: 'object', additionalProperties: { type: 'integer' } } as const;

const instanceSchema = {
  type: 'object',
  required: ['instanceId', 'isSelf', 'isAlive', 'heartbeatAgeMs', 'isDegraded', 'degradedReason', 'startedAt', 'reportedAt', 'counters'],
  properties: {
    instanceId: { type: 'string' },
    isSelf: { type: 'boolean', description: 'The instance that answered' },
    isAlive: { type: 'boolean', description: 'Its liveness key exists (always true in embedded mode)' },
    heartbeatAgeMs: { type: 'integer', description: 'Since its last liveness refresh: how old its counters are' },
    isDegraded: { type: 'boolean', description: 'Cut off from Redis, by its own last report' },
    degradedReason: { type: ['string', 'null'] },
    startedAt: { type: 'integer', description: 'epoch ms' },
    reportedAt: { type: 'integer', description: 'epoch ms of its counters' },
    counters: {
      type: 'object',
      required: ['connections', 'sessions', 'published', 'delivered', 'dropped', 'errors', 'bytesIn', 'heartbeatTimeouts'],
      properties: {
        connections: { type: 'integer', description: 'open connections now' },
        sessions: { type: 'integer', description: 'connected sessions now' },
        published: { ...counts, description: 'messages published since start, by kind (topic, queue, user)' },
        delivered: { ...counts, description: 'MESSAGE frames written since start, by kind' },
        dropped: { ...counts, description: 'messages dropped since start, by kind' },
        errors: { ...counts, description: 'ERROR frames sent since start, by code' },
        bytesIn: { type: 'integer' },
        heartbeatTimeouts: { type: 'integer' },
      },
    },
  },
} as const;

const member = {
  type: 'object',
  required: ['userId', 'roles', 'joinedAt'],
  properties: { userId: { type: 'string' }, roles: { type: 'array', items: { type: 'string' } }, joinedAt: { type: 'integer' } },
} as const;

const roomSchema = {
  type: 'object',
  required: ['destination', 'members'],
  properties: { destination: { type: 'string' }, members: { type: 'array', items: member } },
} as const;

export async function overviewRoutes(app: FastifyInstance, deps: HttpApiDeps): Promise<void> {
  const { registry } = deps;

  app.get('/api/instances', {
    schema: {
      summary: 'Every instance: liveness, degraded state and running totals (rates: compare two readings)',
      tags: ['overview'],
      security,
      response: {
        200: { type: 'object', required: ['instances', 'timestamp'], properties: { instances: { type: 'array', items: instanceSchema }, timestamp: { type: 'integer' } } },
        ...apiErrors,
      },
    },
    handler: async () => ({ instances: await deps.instances.instances(), timestamp: Date.now() }),
  });

  app.get<{ Querystring: { limit: number } }>('/api/rooms', {
    schema: {
      summary: 'Rooms (PRESENCE_DESTINATIONS) that have members, with their members, in name order',
      tags: ['presence'],
      security,
      querystring: { type: 'object', properties: { limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } }, additionalProperties: false },
      response: { 200: { type: 'object', required: ['rooms'], properties: { rooms: { type: 'array', items: roomSchema } } }, ...apiErrors },
    },
    handler: async (request) => ({ rooms: await deps.presence.rooms(request.query.limit) }),
  });

  app.get<{ Querystring: { cursor?: string; limit: number; userId?: string } }>('/api/sessions', {
    schema: {
      summary: "Sessions with their details and subscriptions, a page at a time; with userId, that user's sessions",
      tags: ['sessions'],
      security,
      querystring: {
        type: 'object',
        properties: { ...pageQuery, limit: { ...pageQuery.limit, maximum: 200, default: 50 }, userId: { type: 'string', minLength: 1, maxLength: 500 } },
        additionalProperties: false,
      },
      response: {
        200: {
          type: 'object',
          required: ['totalCount', 'sessions', 'nextCursor'],
          properties: {
            totalCount: { type: 'integer', description: 'all live sessions, or the user’s' },
            sessions: { type: 'array', items: sessionDetailsSchema },
            nextCursor: { type: ['string', 'null'] },
          },
        },
        ...apiErrors,
      },
    },
    handler: async (request) => {
      const { cursor, limit, userId } = request.query;
      if (userId !== undefined) {
        const records = await registry.sessionsOf(userId);
        return { totalCount: records.length, sessions: records.slice(0, limit).map(sessionDetails), nextCursor: null };
      }
      const page = await registry.listSessions(cursor, limit);
      // A session that ended between the listing and its lookup is left out.
      const records = await Promise.all(page.sessionIds.map((id) => registry.get(id)));
      return {
        totalCount: page.totalCount,
        sessions: records.flatMap((record) => (record === undefined ? [] : [sessionDetails(record)])),
        nextCursor: page.nextCursor ?? null,
      };
    },
  });

  /** Everything the dashboard shows but the sessions table, in one reading. */
  const overview = async () => {
    const [stats, instances, queues, rooms] = await Promise.all([registry.stats(), deps.instances.instances(), deps.queues.queueStats(), deps.presence.rooms(FEED_ROOMS)]);
    return { stats, instances, queues, rooms, timestamp: Date.now() };
  };

  app.get('/api/feed', {
    schema: {
      summary: `Server-sent events: an "overview" event every ${FEED_INTERVAL_MS} ms with { stats, instances, queues, rooms, timestamp } as the routes give them; while they cannot be read (Redis away), an "unavailable" event instead, with { message, self: this instance as /api/instances lists it, timestamp }`,
      tags: ['overview'],
      security,
      response: { 200: { description: 'text/event-stream', type: 'string' }, ...apiErrors },
    },
    handler: async (request, reply) => {
      reply.hijack();
      const out = reply.raw;
      out.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
      let isOpen = true;
      let timer: NodeJS.Timeout | undefined;
      const send = async (): Promise<void> => {
        try {
          const data = JSON.stringify(await overview());
          if (isOpen) out.write(`event: overview\ndata: ${data}\n\n`);
        } catch (err) {
          // Redis away: say so and keep the stream; the next reading may work. This instance's
          // own view needs no Redis: it says it is degraded, and why.
          request.log.debug({ err }, 'feed: overview failed');
          const unavailable = { message: err instanceof Error ? err.message : String(err), self: deps.instances.self(), timestamp: Date.now() };
          if (isOpen) out.write(`event: unavailable\ndata: ${JSON.stringify(unavailable)}\n\n`);
        }
        if (isOpen) timer = setTimeout(() => void send(), FEED_INTERVAL_MS);
      };
      request.raw.once('close', () => {
        isOpen = false;
        clearTimeout(timer);
      });
      await send();
    },
  });
}
