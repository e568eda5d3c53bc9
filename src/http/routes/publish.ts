// Server-side publish: the backend's way to notify users (Spring's messaging template). The
// message is built and routed exactly like a SEND (router.createMessage, router.publish), so
// topic and `/user/<id>/…` messages reach the other instances through the relay; a queue is
// this instance's. Access rules do not apply: the caller is an admin. The message's
// `user-id` header is `api/` and the admin's id (the JWT's user, `admin-token`, or
// `loopback`): a user id never contains "/" (refused at CONNECT), so no STOMP user can pass
// for the API. Only the broker itself publishes on presence companion destinations.
// Flow control: the API is one publisher. While it is held (most subscribers of what it
// published are behind), a publish waits before it is routed, and a publish that finds them
// behind answers once they drained: the answer means accepted, as a RECEIPT does.

import type { FastifyInstance } from 'fastify';
import { hasControlCharacters } from '../../broker/destinations';
import { isReservedHeaderName, readsAs } from '../../broker/message';
import type { HttpApiDeps } from '../api';
import { apiErrors, security } from '../schemas';

interface PublishBody {
  destination: string;
  body: string;
  bodyEncoding: 'utf8' | 'base64';
  contentType?: string;
  headers: Record<string, string>;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The `user-id` of an API publish: `api/<admin id>`, a name no STOMP user can have. */
function apiSenderId(adminId: string): string {
  return `api/${adminId}`;
}

/**
 * Header names a publish cannot set: the broker's own (and look-alikes a receiver could
 * mistake for them: isReservedHeaderName), and content-type, which has its own field.
 */
function isForbiddenHeaderName(name: string): boolean {
  return isReservedHeaderName(name) || readsAs(name, 'content-type');
}

export async function publishRoutes(app: FastifyInstance, deps: HttpApiDeps): Promise<void> {
  const badRequest = (message: string) => ({ statusCode: 400, error: 'Bad Request', message });

  app.post<{ Body: PublishBody }>('/api/publish', {
    bodyLimit: Math.ceil((deps.maxBodyBytes * 4) / 3) + 64 * 1024, // base64 and the JSON around it
    schema: {
      summary: 'Publish a message to a topic, a queue or a user destination (/user/<userId>/queue/…)',
      tags: ['admin'],
      security,
      body: {
        type: 'object',
        required: ['destination'],
        additionalProperties: false,
        properties: {
          destination: { type: 'string', minLength: 1, maxLength: 1024, description: '/topic/…, /queue/… or /user/<userId>/queue|topic/…' },
          body: { type: 'string', default: '', description: 'The message body: text, or base64 with bodyEncoding "base64"' },
          bodyEncoding: { type: 'string', enum: ['utf8', 'base64'], default: 'utf8' },
          contentType: { type: 'string', minLength: 1, maxLength: 200, description: 'The content-type header' },
          headers: {
            type: 'object',
            default: {},
            maxProperties: 32,
            additionalProperties: { type: 'string', maxLength: 4096 },
            description: 'Extra headers for the subscribers',
          },
        },
      },
      response: {
        200: {
          type: 'object',
          required: ['messageId', 'destination', 'kind', 'bodyBytes'],
          properties: {
            messageId: { type: 'string', description: 'The message-id subscribers see' },
            destination: { type: 'string' },
            kind: { type: 'string', enum: ['topic', 'queue', 'user'] },
            bodyBytes: { type: 'integer' },
          },
        },
        ...apiErrors,
      },
    },
    handler: async (request, reply) => {
      const { destination, bodyEncoding, contentType, headers } = request.body;
      if (hasControlCharacters(destination)) return reply.code(400).send(badRequest('body/destination contains control characters'));
      const kind = deps.publisher.kindOf(destination);
      if (kind === undefined) return reply.code(400).send(badRequest(`body/destination ${JSON.stringify(destination)} is not a topic, queue or user destination`));
      if (deps.presence.isCompanion(destination)) {
        return reply.code(400).send(badRequest(`body/destination ${JSON.stringify(destination)} carries the broker's presence events: only the broker publishes there`));
      }
      if (kind === 'user' && deps.publisher.destinations.parseUser(destination)?.userId === undefined) {
        return reply.code(400).send(badRequest('body/destination must name the user: /user/<userId>/queue/… (a server has no session of its own)'));
      }
      if (bodyEncoding === 'base64' && !BASE64.test(request.body.body)) return reply.code(400).send(badRequest('body/body is not valid base64'));
      const body = Buffer.from(request.body.body, bodyEncoding === 'base64' ? 'base64' : 'utf8');
      if (body.length > deps.maxBodyBytes) return reply.code(400).send(badRequest(`body/body is ${body.length} bytes, over MAX_FRAME_BYTES (${deps.maxBodyBytes})`));
      const extra: [string, string][] = [];
      for (const [name, value] of Object.entries(headers)) {
        if (isForbiddenHeaderName(name) || /[:\s]/.test(name) || hasControlCharacters(name)) {
          return reply.code(400).send(badRequest(`body/headers/${name} is not a header name a publish may set`));
        }
        if (hasControlCharacters(value)) return reply.code(400).send(badRequest(`body/headers/${name} contains control characters`));
        extra.push([name, value]);
      }
      if (contentType !== undefined) {
        if (hasControlCharacters(contentType)) return reply.code(400).send(badRequest('body/contentType contains control characters'));
        extra.push(['content-type', contentType]);
      }
      const message = deps.publisher.createMessage(destination, extra, body, apiSenderId(request.adminId));
      const flow = kind === 'queue' ? undefined : deps.publisherFlow;
      const heldBefore = flow?.whenReleased;
      if (heldBefore !== undefined) await heldBefore;
      // As for a SEND: the queue limits first, then the store (with Redis, answered once it holds the message).
      const refusal = (await deps.publisher.admit([message])) ?? (await deps.publisher.publish(message, flow));
      const heldAfter = flow?.settle();
      if (heldAfter !== undefined) await heldAfter;
      const relayFull = kind === 'queue' ? undefined : deps.publisher.relayBackpressure?.();
      if (relayFull !== undefined) await relayFull;
      if (refusal !== undefined) {
        request.log.info({ destination, code: refusal.code, by: request.adminId }, 'HTTP publish refused');
        return reply.code(503).send({ statusCode: 503, error: 'Service Unavailable', message: `${refusal.code}: ${refusal.message}` });
      }
      request.log.info({ destination, kind, messageId: message.id, bodyBytes: body.length, by: request.adminId }, 'published through the HTTP API');
      return { messageId: message.id, destination, kind, bodyBytes: body.length };
    },
  });
}
