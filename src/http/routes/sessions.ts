// Session inspection, answered from the shared registry (so every instance gives the same
// answers): list, details, a user's sessions and presence, refresh, stats, online users.

import type { FastifyInstance } from 'fastify';
import type { SessionRecord } from '../../registry/registry';
import type { HttpApiDeps } from '../api';
import { apiErrors, errorSchema, pageQuery, security, sessionDetailsSchema, sessionIdParams, userIdParams } from '../schemas';

export function sessionDetails(record: SessionRecord) {
  return {
    sessionId: record.sessionId,
    userId: record.userId,
    userRole: record.roles[0] ?? null,
    roles: [...record.roles],
    instanceId: record.instanceId,
    transport: record.transport,
    remoteAddress: record.remoteAddress,
    connectedAt: record.connectedAt,
    lastSeenAt: record.lastSeenAt,
    subscriptions: record.subscriptions ?? [],
  };
}

const notFound = { description: 'Unknown session', ...errorSchema };

export async function sessionRoutes(app: FastifyInstance, deps: HttpApiDeps): Promise<void> {
  const { registry } = deps;

  app.get<{ Querystring: { cursor?: string; limit: number } }>('/api/session/all', {
    schema: {
      summary: 'Live session ids, a page at a time (SSCAN in Redis, never KEYS)',
      tags: ['sessions'],
      security,
      querystring: { type: 'object', properties: pageQuery, additionalProperties: false },
      response: {
        200: {
          type: 'object',
          required: ['totalCount', 'sessions', 'nextCursor'],
          properties: {
            totalCount: { type: 'integer' },
            sessions: { type: 'array', items: { type: 'string' } },
            nextCursor: { type: ['string', 'null'], description: 'Pass as cursor for the next page; null on the last one' },
          },
        },
        ...apiErrors,
      },
    },
    handler: async (request) => {
      const page = await registry.listSessions(request.query.cursor, request.query.limit);
      return { totalCount: page.totalCount, sessions: page.sessionIds, nextCursor: page.nextCursor ?? null };
    },
  });

  app.get('/api/session/stats', {
    schema: {
      summary: 'Sessions and users across every instance',
      tags: ['sessions'],
      security,
      response: {
        200: {
          type: 'object',
          required: ['totalActiveSessions', 'onlineUsers', 'byTransport', 'perInstance', 'timestamp'],
          properties: {
            totalActiveSessions: { type: 'integer' },
            onlineUsers: { type: 'integer' },
            byTransport: { type: 'object', additionalProperties: { type: 'integer' } },
            perInstance: {
              type: 'object',
              additionalProperties: { type: 'object', required: ['sessions', 'users'], properties: { sessions: { type: 'integer' }, users: { type: 'integer' } } },
            },
            timestamp: { type: 'integer', description: 'epoch ms' },
          },
        },
        ...apiErrors,
      },
    },
    handler: async () => ({ ...(await registry.stats()), timestamp: Date.now() }),
  });

  app.get<{ Params: { sessionId: string } }>('/api/session/:sessionId', {
    schema: {
      summary: 'One session',
      tags: ['sessions'],
      security,
      params: sessionIdParams,
      response: { 200: sessionDetailsSchema, 404: notFound, ...apiErrors },
    },
    handler: async (request, reply) => {
      const record = await registry.get(request.params.sessionId);
      if (record === undefined) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no session ${request.params.sessionId}` });
      return sessionDetails(record);
    },
  });

  app.post<{ Params: { sessionId: string } }>('/api/session/:sessionId/refresh', {
    schema: {
      summary: "Note the session alive and extend its registry entry's TTL",
      tags: ['sessions'],
      security,
      params: sessionIdParams,
      response: {
        200: {
          type: 'object',
          required: ['sessionId', 'userId', 'refreshed', 'ttlSeconds'],
          properties: {
            sessionId: { type: 'string' },
            userId: { type: 'string' },
            refreshed: { type: 'boolean', enum: [true] },
            ttlSeconds: { type: ['integer', 'null'], description: 'The TTL now set (SESSION_TTL_SECONDS); null in embedded mode, where sessions do not expire' },
          },
        },
        404: notFound,
        ...apiErrors,
      },
    },
    handler: async (request, reply) => {
      const refreshed = await registry.refreshSession(request.params.sessionId);
      if (refreshed === undefined) return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no session ${request.params.sessionId}` });
      return { sessionId: refreshed.record.sessionId, userId: refreshed.record.userId, refreshed: true, ttlSeconds: refreshed.ttlSeconds };
    },
  });

  const presence = {
    userId: { type: 'string' },
    isOnline: { type: 'boolean' },
    sessionCount: { type: 'integer' },
  } as const;

  app.get<{ Params: { userId: string } }>('/api/session/user/:userId', {
    schema: {
      summary: "A user's sessions, on every instance, oldest first",
      tags: ['sessions'],
      security,
      params: userIdParams,
      response: {
        200: {
          type: 'object',
          required: ['userId', 'isOnline', 'sessionCount', 'sessions'],
          properties: { ...presence, sessions: { type: 'array', items: sessionDetailsSchema } },
        },
        ...apiErrors,
      },
    },
    handler: async (request) => {
      const records = await registry.sessionsOf(request.params.userId);
      return { userId: request.params.userId, isOnline: records.length > 0, sessionCount: records.length, sessions: records.map(sessionDetails) };
    },
  });

  app.get<{ Params: { userId: string } }>('/api/session/user/:userId/online', {
    schema: {
      summary: 'Whether a user is online, and on how many sessions',
      tags: ['sessions'],
      security,
      params: userIdParams,
      response: { 200: { type: 'object', required: ['userId', 'isOnline', 'sessionCount'], properties: presence }, ...apiErrors },
    },
    handler: async (request) => {
      const records = await registry.sessionsOf(request.params.userId);
      return { userId: request.params.userId, isOnline: records.length > 0, sessionCount: records.length };
    },
  });

  app.get<{ Querystring: { cursor?: string; limit: number; role?: string } }>('/api/users/online', {
    schema: {
      summary: 'Online users with their roles, optionally only those holding a role, in user-id order',
      tags: ['sessions'],
      security,
      querystring: {
        type: 'object',
        properties: { ...pageQuery, role: { type: 'string', minLength: 1, maxLength: 200, description: 'Only users one of whose sessions holds this role' } },
        additionalProperties: false,
      },
      response: {
        200: {
          type: 'object',
          required: ['users', 'nextCursor'],
          properties: {
            users: {
              type: 'array',
              items: {
                type: 'object',
                required: ['userId', 'roles', 'sessionCount'],
                properties: { userId: { type: 'string' }, roles: { type: 'array', items: { type: 'string' } }, sessionCount: { type: 'integer' } },
              },
            },
            nextCursor: { type: ['string', 'null'] },
          },
        },
        ...apiErrors,
      },
    },
    handler: async (request) => {
      const { cursor, limit, role } = request.query;
      const page = await registry.onlineUsersPage({ cursor, limit, role });
      return { users: page.users, nextCursor: page.nextCursor ?? null };
    },
  });
}
