// A customer-support chat as a Spring team would have written it with @MessageMapping
// controllers, moved to stompd's backend hooks: the browser code (stompjs, SockJS or not,
// /app/… sends, /topic/… and /user/queue/… subscriptions) is unchanged; the controllers
// become the handlers below, behind BACKEND_URL=http://127.0.0.1:3000/stomp.
//
//   customer: SEND /app/ticket.open {subject}   → reply /queue/ticket (only that tab), publish /topic/agents.tickets
//   agent:    SUBSCRIBE /app/tickets.open        → the open tickets, once (@SubscribeMapping)
//   agent:    SEND /app/ticket.claim {ticketId}  → toUser customer /queue/notify, publish /topic/ticket.<id>
//   both:     SEND /app/chat.send {ticketId,text}→ publish /topic/ticket.<id>; not yours: /user/queue/errors
//   both:     SEND /app/ticket.<id>.typing       → the return value: /topic/ticket.<id>.typing
//   SUBSCRIBE /topic/ticket.<id> (BACKEND_SUBSCRIBE_PATTERNS=/topic/ticket.*) → only its customer and agent
//   CONNECT: the `chat_session` cookie set by POST /login (Spring Security's session cookie)
//   events:  a customer's DISCONNECT (tab closed, network lost, instance died) is told to the ticket
//
// In memory and single-process, as an example is: a real app keeps tickets and logins in its
// database. Run: `npm run build && node dist/examples/support-chat/backend.js` (PORT,
// BACKEND_SECRET, STOMPD_API_URL, ADMIN_TOKEN), then open http://127.0.0.1:3000/ (index.html:
// the page, with the browser code a Spring app has).

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Fastify from 'fastify';
import type { FastifyInstance, FastifyRequest } from 'fastify';

// --- The hook contract, as this app uses it (stompd's OpenAPI document has all of it) ---

interface CallBase {
  id: string;
  sessionId: string;
  userId: string;
  roles: string[];
  attributes: Record<string, unknown>;
}
interface SendCall extends CallBase {
  destination: string;
  lookup: string;
  headers: Record<string, string>;
  body?: string;
}
interface ConnectCall extends CallBase {
  connectHeaders: Record<string, string>;
  http: Record<string, string>;
}
interface SubscribeCall extends CallBase {
  destination: string;
  lookup?: string;
}
interface SessionEvent {
  id: string;
  type: 'CONNECT' | 'DISCONNECT' | 'SUBSCRIBE' | 'UNSUBSCRIBE';
  sessionId: string;
  userId: string;
  roles: string[];
  destination?: string;
  reason?: string;
}
export interface Message {
  destination: string;
  body: string;
  headers?: Record<string, string>;
}
interface SendAnswer {
  publish?: Message[];
  toUser?: (Message & { userId: string })[];
  reply?: Message[];
  body?: string;
  error?: { code: string; message: string; fatal?: boolean };
}

// --- The app's own state ---

export type Role = 'CUSTOMER' | 'AGENT';

interface Login {
  userId: string;
  role: Role;
}

export interface Ticket {
  id: string;
  customer: string;
  subject: string;
  agent: string | undefined;
  isCustomerOnline: boolean;
}

export interface SupportChatOptions {
  /** BACKEND_SECRET: every hook call must carry its signature. */
  secret?: string;
  /** JSON schemas of the hook calls by hook name (from stompd's /api/openapi.json `webhooks`): calls are validated against them. */
  callSchemas?: Partial<Record<'send' | 'connect' | 'subscribe' | 'events' | 'refresh', object>>;
  /** How long a STOMP login lasts before /refresh is asked to extend it. */
  loginTtlMs?: number;
  /** Messages sent outside a hook answer (SimpMessagingTemplate): stompd's POST /api/publish, see apiPublisher. */
  publish?: (message: Message) => Promise<void>;
}

export interface SupportChat {
  app: FastifyInstance;
  tickets: Map<string, Ticket>;
  /** Session event ids handled, to drop redeliveries (events come at least once). */
  seenEvents: Set<string>;
}

/** A text field of a client's JSON: anything but a string counts as empty (no "[object Object]" subjects). */
const textOf = (value: unknown): string => (typeof value === 'string' ? value : '');

const json = (text: string | undefined): Record<string, unknown> => {
  try {
    const value: unknown = JSON.parse(text ?? '');
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  } catch {
    return {};
  }
};

const cookie = (header: string | undefined, name: string): string | undefined =>
  header
    ?.split(';')
    .map((part) => part.trim())
    .find((part) => part.startsWith(`${name}=`))
    ?.slice(name.length + 1);

export function buildSupportChat(options: SupportChatOptions = {}): SupportChat {
  const app = Fastify({ logger: false, ajv: { customOptions: { removeAdditional: false } } });
  const logins = new Map<string, Login>();
  const tickets = new Map<string, Ticket>();
  const seenEvents = new Set<string>();
  let nextTicket = 1;
  const loginTtlMs = options.loginTtlMs ?? 3_600_000;

  // The raw body is what the signature covers.
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, raw, done) => {
    if (options.secret !== undefined && request.url.startsWith('/stomp/') && !isSigned(raw as Buffer, request, options.secret)) {
      done(Object.assign(new Error('bad signature'), { statusCode: 401 }), undefined);
      return;
    }
    try {
      done(null, JSON.parse((raw as Buffer).toString('utf8')));
    } catch (error) {
      done(Object.assign(error as Error, { statusCode: 400 }), undefined);
    }
  });
  const hookRoute = (hook: keyof NonNullable<SupportChatOptions['callSchemas']>) => {
    const schema = options.callSchemas?.[hook];
    return schema === undefined ? {} : { schema: { body: schema } };
  };

  // The app's page, and the two client bundles it loads (a CDN would serve those).
  // Run from the checkout (dist/examples/support-chat/): the page beside the sources, the bundles in node_modules.
  const root = path.join(__dirname, '../../..');
  const page = path.join(root, 'examples/support-chat/index.html');
  const bundles: Record<string, string> = {
    '/sockjs.min.js': path.join(root, 'node_modules/sockjs-client/dist/sockjs.min.js'),
    '/stomp.umd.min.js': path.join(root, 'node_modules/@stomp/stompjs/bundles/stomp.umd.min.js'),
  };
  app.get('/', async (_request, reply) => reply.type('text/html').send(fs.createReadStream(page)));
  app.get('/:bundle', async (request, reply) => {
    const file = bundles[`/${(request.params as { bundle: string }).bundle}`];
    return file === undefined ? reply.code(404).send() : reply.type('text/javascript').send(fs.createReadStream(file));
  });

  // The app's login (Spring Security's form login): sets the session cookie the browser sends
  // with the WebSocket or SockJS handshake. A demo: no password.
  app.post('/login', async (request, reply) => {
    const { userId, role } = request.body as { userId?: string; role?: string };
    if (typeof userId !== 'string' || !/^[\w.-]{1,64}$/.test(userId) || (role !== 'CUSTOMER' && role !== 'AGENT')) return reply.code(400).send({ message: 'userId and role (CUSTOMER or AGENT)' });
    const token = randomBytes(24).toString('base64url');
    logins.set(token, { userId, role });
    return reply.header('set-cookie', `chat_session=${token}; Path=/; HttpOnly; SameSite=Lax`).send({ userId, role });
  });

  // ChannelInterceptor on CONNECT: who is this, from the session cookie.
  app.post('/stomp/connect', hookRoute('connect'), async (request) => {
    const call = request.body as ConnectCall;
    const login = logins.get(cookie(call.http.cookie, 'chat_session') ?? '');
    if (login === undefined) return { error: { code: 'UNAUTHENTICATED', message: 'log in first' } };
    return {
      userId: login.userId,
      roles: [login.role],
      attributes: { role: login.role },
      expiresAt: Date.now() + loginTtlMs,
      permissions: {
        subscribe: ['/topic/ticket.*', '/topic/ticket.*.typing', '/user/{userId}/queue/**', '/app/**', ...(login.role === 'AGENT' ? ['/topic/agents.tickets'] : [])],
      },
    };
  });

  // The login goes on while the app's session does.
  app.post('/stomp/refresh', hookRoute('refresh'), async (request) => {
    const call = request.body as CallBase;
    const isStillLoggedIn = [...logins.values()].some((login) => login.userId === call.userId);
    return isStillLoggedIn ? { expiresAt: Date.now() + loginTtlMs } : { error: { code: 'TOKEN_EXPIRED', message: 'logged out' } };
  });

  // @MessageMapping controllers.
  app.post('/stomp/send', hookRoute('send'), async (request, reply) => {
    const call = request.body as SendCall;
    const answer = handleSend(call);
    return answer === undefined ? reply.code(204).send() : answer;
  });

  function handleSend(call: SendCall): SendAnswer | undefined {
    const role = call.roles[0] as Role | undefined;
    const payload = json(call.body);
    const typing = /^\/ticket\.(\d+)\.typing$/.exec(call.lookup);
    if (typing !== null) {
      // A @MessageMapping method's return value goes to /topic + its path.
      return isParticipant(tickets.get(typing[1]!), call.userId) ? { body: JSON.stringify({ userId: call.userId }) } : undefined;
    }
    switch (call.lookup) {
      case '/ticket.open': {
        if (role !== 'CUSTOMER') return { error: { code: 'NOT_A_CUSTOMER', message: 'only customers open tickets' } };
        const ticket: Ticket = { id: String(nextTicket++), customer: call.userId, subject: textOf(payload.subject), agent: undefined, isCustomerOnline: true };
        tickets.set(ticket.id, ticket);
        const summary = JSON.stringify(ticket);
        return {
          reply: [{ destination: '/queue/ticket', body: summary }], // @SendToUser(broadcast = false)
          publish: [{ destination: '/topic/agents.tickets', body: summary }], // @SendTo
        };
      }
      case '/ticket.claim': {
        if (role !== 'AGENT') return { error: { code: 'NOT_AN_AGENT', message: 'only agents claim tickets' } };
        const ticket = tickets.get(String(payload.ticketId));
        if (ticket === undefined) return { error: { code: 'NO_SUCH_TICKET', message: `no ticket ${String(payload.ticketId)}` } };
        if (ticket.agent !== undefined && ticket.agent !== call.userId) return { error: { code: 'TICKET_TAKEN', message: `ticket ${ticket.id} is ${ticket.agent}'s` } };
        ticket.agent = call.userId;
        return {
          toUser: [{ userId: ticket.customer, destination: '/queue/notify', body: JSON.stringify({ ticketId: ticket.id, agent: call.userId }) }], // convertAndSendToUser
          publish: [{ destination: `/topic/ticket.${ticket.id}`, body: JSON.stringify({ system: `${call.userId} joined` }) }],
        };
      }
      case '/chat.send': {
        const ticket = tickets.get(String(payload.ticketId));
        // @MessageExceptionHandler: the sender hears it on /user/queue/errors, the connection stays.
        if (!isParticipant(ticket, call.userId)) return { error: { code: 'NOT_IN_TICKET', message: `you are not in ticket ${String(payload.ticketId)}` } };
        const text = textOf(payload.text).slice(0, 2000);
        return { publish: [{ destination: `/topic/ticket.${ticket!.id}`, body: JSON.stringify({ from: call.userId, text }), headers: { 'x-ticket': ticket!.id } }] };
      }
      default:
        return { error: { code: 'NO_HANDLER', message: `no @MessageMapping for ${call.lookup}` } };
    }
  }

  // SUBSCRIBE checks for /topic/ticket.* (BACKEND_SUBSCRIBE_PATTERNS), and @SubscribeMapping.
  app.post('/stomp/subscribe', hookRoute('subscribe'), async (request) => {
    const call = request.body as SubscribeCall;
    if (call.lookup === '/tickets.open') {
      if (!call.roles.includes('AGENT')) return { error: { code: 'FORBIDDEN', message: 'agents only' } };
      return { body: JSON.stringify([...tickets.values()].filter((t) => t.agent === undefined)) };
    }
    const room = /^\/topic\/ticket\.(\d+)(\.typing)?$/.exec(call.destination);
    if (room !== null && isParticipant(tickets.get(room[1]!), call.userId)) return { allow: true };
    return { error: { code: 'FORBIDDEN', message: `not your ticket: ${call.destination}` } };
  });

  // SessionConnectEvent / SessionDisconnectEvent, delivered at least once: drop repeats by id.
  app.post('/stomp/events', hookRoute('events'), async (request, reply) => {
    const { events } = request.body as { events: SessionEvent[] };
    const notices: Message[] = [];
    for (const event of events) {
      if (seenEvents.has(event.id)) continue;
      seenEvents.add(event.id);
      if (!event.roles.includes('CUSTOMER') || (event.type !== 'CONNECT' && event.type !== 'DISCONNECT')) continue;
      for (const ticket of tickets.values()) {
        if (ticket.customer !== event.userId) continue;
        ticket.isCustomerOnline = event.type === 'CONNECT';
        if (event.type === 'DISCONNECT') notices.push({ destination: `/topic/ticket.${ticket.id}`, body: JSON.stringify({ system: `${event.userId} left (${event.reason ?? 'unknown'})` }) });
      }
    }
    // An events answer carries no messages: the app publishes through POST /api/publish, as
    // any server-side code does (SimpMessagingTemplate outside a controller).
    // A failed publish fails the call: stompd delivers these events again (ids already seen are skipped).
    const { publish } = options;
    if (publish !== undefined) await Promise.all(notices.map((notice) => publish(notice)));
    return reply.code(204).send();
  });

  return { app, tickets, seenEvents };
}

function isParticipant(ticket: Ticket | undefined, userId: string): boolean {
  return ticket !== undefined && (ticket.customer === userId || ticket.agent === userId);
}

function isSigned(raw: Buffer, request: FastifyRequest, secret: string): boolean {
  const given = Buffer.from(String(request.headers['x-stompd-signature'] ?? ''));
  const expected = Buffer.from(`sha256=${createHmac('sha256', secret).update(raw).digest('hex')}`);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** SimpMessagingTemplate outside a controller: stompd's POST /api/publish. */
export function apiPublisher(apiUrl: string, adminToken: string | undefined): (message: Message) => Promise<void> {
  return async (message) => {
    const response = await fetch(`${apiUrl}/api/publish`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(adminToken ? { authorization: `Bearer ${adminToken}` } : {}) },
      body: JSON.stringify({ destination: message.destination, body: message.body, ...(message.headers ? { headers: message.headers } : {}) }),
    });
    if (!response.ok) throw new Error(`POST /api/publish: ${response.status} ${await response.text()}`);
  };
}

if (require.main === module) {
  const chat = buildSupportChat({
    ...(process.env.BACKEND_SECRET ? { secret: process.env.BACKEND_SECRET } : {}),
    publish: apiPublisher(process.env.STOMPD_API_URL ?? 'http://127.0.0.1:8080', process.env.ADMIN_TOKEN),
  });
  const port = Number(process.env.PORT ?? 3000);
  chat.app.listen({ host: '127.0.0.1', port }).then(
    () => console.log(`support-chat backend on http://127.0.0.1:${port} (BACKEND_URL=http://127.0.0.1:${port}/stomp)`),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
