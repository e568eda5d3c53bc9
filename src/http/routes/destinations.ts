// What is going on at destinations: a room's members (presence) and the queues, answered
// from the shared state (Redis, with several instances) so every instance gives the same answer.

import type { FastifyInstance } from 'fastify';
import type { HttpApiDeps } from '../api';
import { apiErrors, errorSchema, security } from '../schemas';

const member = {
  type: 'object',
  required: ['userId', 'roles', 'joinedAt'],
  properties: { userId: { type: 'string' }, roles: { type: 'array', items: { type: 'string' } }, joinedAt: { type: 'integer', description: 'epoch ms' } },
} as const;

const queueStat = {
  type: 'object',
  required: ['name', 'depth', 'unacked', 'consumers', 'oldestAgeMs', 'dropped', 'expired'],
  properties: {
    name: { type: 'string' },
    depth: { type: 'integer', description: 'stored, not handed to a consumer yet' },
    unacked: { type: 'integer', description: 'delivered, not acknowledged yet' },
    consumers: { type: 'integer', description: 'subscriptions consuming it, on every instance' },
    oldestAgeMs: { type: 'integer', description: 'age of the oldest message it holds; 0 when empty' },
    dropped: { type: 'integer', description: 'dropped because the queue was full' },
    expired: { type: 'integer', description: 'dropped unseen because their expires time passed' },
  },
} as const;

export async function destinationRoutes(app: FastifyInstance, deps: HttpApiDeps): Promise<void> {
  app.get<{ Querystring: { destination: string } }>('/api/presence', {
    schema: {
      summary: "A room's current members, with their roles and join times",
      tags: ['presence'],
      security,
      querystring: {
        type: 'object',
        required: ['destination'],
        properties: { destination: { type: 'string', minLength: 1, maxLength: 8192 } },
        additionalProperties: false,
      },
      response: {
        200: { type: 'object', required: ['destination', 'members'], properties: { destination: { type: 'string' }, members: { type: 'array', items: member } } },
        404: { description: 'Not a presence destination (PRESENCE_DESTINATIONS)', ...errorSchema },
        ...apiErrors,
      },
    },
    handler: async (request, reply) => {
      const { destination } = request.query;
      if (!deps.presence.isRoom(destination)) {
        return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `${destination} is not a presence destination (PRESENCE_DESTINATIONS)` });
      }
      return { destination, members: await deps.presence.members(destination) };
    },
  });

  app.get('/api/queues', {
    schema: {
      summary: 'Every queue: depth, unacknowledged, consumers, age of the oldest message',
      tags: ['queues'],
      security,
      response: { 200: { type: 'object', required: ['queues'], properties: { queues: { type: 'array', items: queueStat } } }, ...apiErrors },
    },
    handler: async () => ({ queues: await deps.queues.queueStats() }),
  });
}
