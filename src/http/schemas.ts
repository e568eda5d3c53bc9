// JSON schemas shared by the routes: Fastify validates requests and serializes responses
// with them, and @fastify/swagger builds the OpenAPI document from them.

export const errorSchema = {
  type: 'object',
  required: ['statusCode', 'error', 'message'],
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string', description: 'The HTTP status text' },
    message: { type: 'string', description: 'What is wrong; a bad input names its field (querystring/limit, body/destination, …)' },
  },
} as const;

/** The answers every /api route may give besides its own. */
export const apiErrors = {
  400: { description: 'Invalid input (the message names the field)', ...errorSchema },
  401: { description: 'No valid admin credential', ...errorSchema },
  403: { description: 'A valid JWT without an admin role', ...errorSchema },
  429: { description: 'Too many failed authentications from this address', ...errorSchema },
  503: { description: 'The session registry (Redis) is unreachable', ...errorSchema },
} as const;

export const sessionDetailsSchema = {
  type: 'object',
  required: ['sessionId', 'userId', 'userRole', 'roles', 'instanceId', 'transport', 'remoteAddress', 'connectedAt', 'lastSeenAt', 'subscriptions'],
  properties: {
    sessionId: { type: 'string' },
    userId: { type: 'string' },
    userRole: { type: ['string', 'null'], description: 'The first of roles, null when none' },
    roles: { type: 'array', items: { type: 'string' } },
    instanceId: { type: 'string', description: 'The stompd instance holding the connection' },
    transport: { type: 'string', enum: ['tcp', 'ws'] },
    remoteAddress: { type: 'string' },
    connectedAt: { type: 'integer', description: 'epoch ms' },
    lastSeenAt: { type: 'integer', description: 'epoch ms' },
    subscriptions: {
      type: 'array',
      description: 'Its subscriptions (noted within a second of a change)',
      items: { type: 'object', required: ['id', 'destination', 'ack'], properties: { id: { type: 'string' }, destination: { type: 'string' }, ack: { type: 'string' } } },
    },
  },
} as const;

export const security = [{ bearerAuth: [] }];

export const sessionIdParams = {
  type: 'object',
  required: ['sessionId'],
  properties: { sessionId: { type: 'string', minLength: 1, maxLength: 200 } },
} as const;

export const userIdParams = {
  type: 'object',
  required: ['userId'],
  properties: { userId: { type: 'string', minLength: 1, maxLength: 500 } },
} as const;

export const pageQuery = {
  cursor: { type: 'string', minLength: 1, maxLength: 16384, description: 'nextCursor of the previous page' },
  limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
} as const;
