// Admin actions: kick one session (ERROR KICKED) or log a user out everywhere (ERROR
// LOGGED_OUT, and the user's earlier tokens revoked), on whichever instance the sessions live.

import type { FastifyInstance } from 'fastify';
import type { HttpApiDeps } from '../api';
import { apiErrors, errorSchema, security, sessionIdParams, userIdParams } from '../schemas';

const outcome = {
  sessionsClosed: { type: 'integer', description: 'Sessions told to close, here and on other instances' },
  instancesReached: { type: 'integer', description: 'Instances that heard the request, this one included' },
} as const;

export async function adminRoutes(app: FastifyInstance, deps: HttpApiDeps): Promise<void> {
  app.delete<{ Params: { sessionId: string } }>('/api/session/:sessionId', {
    schema: {
      summary: 'Close one session with ERROR KICKED, on whichever instance holds it',
      tags: ['admin'],
      security,
      params: sessionIdParams,
      response: {
        200: { type: 'object', required: ['sessionId', 'sessionsClosed', 'instancesReached'], properties: { sessionId: { type: 'string' }, ...outcome } },
        404: { description: 'Unknown session', ...errorSchema },
        ...apiErrors,
      },
    },
    handler: async (request, reply) => {
      const { sessionId } = request.params;
      if ((await deps.registry.get(sessionId)) === undefined) {
        return reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no session ${sessionId}` });
      }
      const result = await deps.admin.kickSession(sessionId);
      request.log.info({ sessionId, by: request.adminId, ...result }, 'session kicked through the HTTP API');
      return { sessionId, ...result };
    },
  });

  app.delete<{ Params: { userId: string } }>('/api/session/user/:userId', {
    schema: {
      summary: 'Log a user out on every instance: ERROR LOGGED_OUT, and tokens issued before now are refused (TOKEN_REVOKED)',
      tags: ['admin'],
      security,
      params: userIdParams,
      response: {
        200: { type: 'object', required: ['userId', 'sessionsClosed', 'instancesReached'], properties: { userId: { type: 'string' }, ...outcome } },
        ...apiErrors,
      },
    },
    handler: async (request) => {
      const { userId } = request.params;
      const result = await deps.admin.logoutUser(userId);
      request.log.info({ userId, by: request.adminId, ...result }, 'user logged out through the HTTP API');
      return { userId, ...result };
    },
  });
}
