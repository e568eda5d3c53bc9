// The hook contract as the OpenAPI document shows it: what stompd POSTs to BACKEND_URL + /send,
// /connect, /subscribe, /events and /refresh, and what the backend may answer (OpenAPI 3.1
// `webhooks`: requests the API's side sends, not routes it serves). The names are those of
// src/backend/contract.ts; a test runs a backend that validates every call against these
// schemas, so the document cannot drift from what is sent.

const stringMap = { type: 'object', additionalProperties: { type: 'string' } } as const;
const stringList = { type: 'array', items: { type: 'string' } } as const;

/** Fields every call but /events carries: who is asking, from where. */
const callBase = {
  id: { type: 'string', description: 'Unique per call: a backend may drop a call it has already seen' },
  instanceId: { type: 'string', description: 'The stompd instance calling' },
  sessionId: { type: 'string', description: "The STOMP session (Spring's simpSessionId)" },
  userId: { type: 'string', description: "The user (Spring's Principal name); '' before one is known (a CONNECT hook without JWT auth)" },
  roles: stringList,
  attributes: { type: 'object', description: 'What the CONNECT hook answered as attributes, else {}' },
  transport: { type: 'string', enum: ['ws', 'tcp'], description: 'ws: WebSocket or SockJS; tcp: raw TCP' },
  remoteAddress: { type: 'string', description: 'host:port of the client' },
} as const;
const callBaseRequired = ['id', 'instanceId', 'sessionId', 'userId', 'roles', 'attributes', 'transport', 'remoteAddress'] as const;

const body = {
  body: { type: 'string', description: 'UTF-8 text' },
  bodyBase64: { type: 'string', description: 'Bytes that are not UTF-8 text (by content-type), base64' },
} as const;

const outgoingMessage = {
  type: 'object',
  required: ['destination'],
  properties: { destination: { type: 'string' }, headers: stringMap, ...body },
} as const;

const refusal = {
  type: 'object',
  required: ['message'],
  properties: { code: { type: 'string' }, message: { type: 'string' } },
} as const;

export const sendCallSchema = {
  type: 'object',
  additionalProperties: false,
  required: [...callBaseRequired, 'destination', 'lookup', 'headers'],
  properties: {
    ...callBase,
    destination: { type: 'string', description: 'As the client sent it: /app/chat.send' },
    lookup: { type: 'string', description: 'The app prefix removed: /chat.send (the @MessageMapping path)' },
    headers: { ...stringMap, description: "The SEND's user headers only" },
    ...body,
    receipt: { type: 'string', description: 'The client asked for a RECEIPT: it follows this call’s 2xx and the routing of its messages' },
  },
} as const;

export const sendAnswerSchema = {
  type: 'object',
  description: 'HTTP 200 with this JSON, or 204: nothing to send. Messages cannot set reserved headers (x-presence, x-dropped, redelivered, user id).',
  properties: {
    publish: { type: 'array', items: outgoingMessage, description: 'To any destination (/topic/…, /queue/…, /user/<id>/queue/…), through the cluster like any SEND (SimpMessagingTemplate.convertAndSend)' },
    toUser: {
      type: 'array',
      items: { ...outgoingMessage, required: ['userId', 'destination'], properties: { userId: { type: 'string' }, ...outgoingMessage.properties } },
      description: 'Every session of userId, on its /user<destination> subscription (convertAndSendToUser, @SendToUser)',
    },
    reply: { type: 'array', items: outgoingMessage, description: 'Only the sending session: /queue/reply reaches its /user/queue/reply subscription (@SendToUser(broadcast = false))' },
    ...body,
    headers: { ...stringMap, description: "With body or bodyBase64 alone: published to /topic + lookup (a @MessageMapping method's return value)" },
    error: {
      type: 'object',
      required: ['message'],
      properties: {
        message: { type: 'string' },
        code: { type: 'string' },
        fatal: { type: 'boolean', description: 'true: ERROR frame and close; false (default): a MESSAGE on the sender’s /user/queue/errors with headers x-error-code and message (@MessageExceptionHandler)' },
      },
    },
  },
} as const;

export const connectCallSchema = {
  type: 'object',
  additionalProperties: false,
  required: [...callBaseRequired, 'connectHeaders', 'http'],
  properties: {
    ...callBase,
    connectHeaders: { ...stringMap, description: 'Every CONNECT header as the client sent it: untrusted input' },
    http: { ...stringMap, description: 'The WebSocket (or SockJS) handshake headers named in BACKEND_FORWARD_HEADERS, lower-case names (cookie, origin, …); {} over TCP' },
  },
} as const;

export const connectAnswerSchema = {
  type: 'object',
  description: 'userId admits the session (ChannelInterceptor on CONNECT setting the Principal); error refuses it (ERROR UNAUTHENTICATED, or code). A timeout or failure refuses too (UNAVAILABLE).',
  properties: {
    userId: { type: 'string' },
    roles: stringList,
    attributes: { type: 'object', description: 'Kept with the session and sent with every later call' },
    expiresAt: { type: 'number', description: 'ms since the epoch: the login ends then unless POST /refresh extends it' },
    permissions: {
      type: 'object',
      properties: { subscribe: { ...stringList, description: 'Destination patterns (* one segment, ** any, {userId})' }, send: stringList },
    },
    error: refusal,
  },
} as const;

export const subscribeCallSchema = {
  type: 'object',
  additionalProperties: false,
  required: [...callBaseRequired, 'destination', 'headers', 'subscriptionId'],
  properties: {
    ...callBase,
    destination: { type: 'string' },
    lookup: { type: 'string', description: 'App destinations only (@SubscribeMapping): the prefix removed' },
    headers: { ...stringMap, description: "The SUBSCRIBE's headers but destination, id, ack and receipt" },
    subscriptionId: { type: 'string' },
  },
} as const;

export const subscribeAnswerSchema = {
  type: 'object',
  description:
    'BACKEND_SUBSCRIBE_PATTERNS: allow, or error (ERROR FORBIDDEN, or code); cached per session and destination. App destinations (@SubscribeMapping): the body arrives as one MESSAGE on that subscription, and none is kept.',
  properties: { allow: { type: 'boolean' }, ...body, headers: stringMap, error: refusal },
} as const;

export const eventsCallSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['events'],
  properties: {
    events: {
      type: 'array',
      maxItems: 100,
      description: 'At least once, in order per session; redelivered with back-off until a 2xx (SessionConnectEvent, SessionDisconnectEvent, SessionSubscribeEvent, SessionUnsubscribeEvent)',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'type', 'sessionId', 'userId', 'roles', 'attributes', 'at', 'instanceId'],
        properties: {
          id: { type: 'string', description: 'The same on a redelivery: drop duplicates by it' },
          type: { type: 'string', enum: ['CONNECT', 'DISCONNECT', 'SUBSCRIBE', 'UNSUBSCRIBE'] },
          sessionId: { type: 'string' },
          userId: { type: 'string' },
          roles: stringList,
          attributes: { type: 'object' },
          destination: { type: 'string', description: 'SUBSCRIBE, UNSUBSCRIBE' },
          reason: { type: 'string', description: 'DISCONNECT: disconnect, socket-closed, heartbeat-timeout, kicked, logged-out, token-expired, instance-lost, …' },
          at: { type: 'number', description: 'ms since the epoch' },
          instanceId: { type: 'string', description: 'The instance that held the session' },
        },
      },
    },
  },
} as const;

export const refreshCallSchema = {
  type: 'object',
  additionalProperties: false,
  required: [...callBaseRequired, 'expiresAt'],
  properties: { ...callBase, expiresAt: { type: 'number', description: 'When the login ends now (ms since the epoch)' } },
} as const;

export const refreshAnswerSchema = {
  type: 'object',
  description: 'expiresAt later than the current one extends the login; error (or no answer by then) ends the session with TOKEN_EXPIRED',
  properties: { expiresAt: { type: 'number' }, error: refusal },
} as const;

const signature = {
  name: 'x-stompd-signature',
  in: 'header',
  required: false,
  description: 'With BACKEND_SECRET: sha256=<hex HMAC-SHA256 of the raw body>',
  schema: { type: 'string', pattern: '^sha256=[0-9a-f]{64}$' },
} as const;

function webhook(summary: string, call: object, answer: object | undefined, hook: string) {
  return {
    post: {
      summary,
      description: `stompd POSTs this to BACKEND_URL + /${hook} when "${hook}" is in BACKEND_HOOKS.`,
      operationId: `hook-${hook}`,
      tags: ['hooks'],
      parameters: [signature],
      requestBody: { required: true, content: { 'application/json': { schema: call } } },
      responses: {
        '200': answer === undefined ? { description: 'Taken (any 2xx)' } : { description: 'The answer', content: { 'application/json': { schema: answer } } },
        ...(hook === 'send' ? { '204': { description: 'Nothing to send' } } : {}),
        default: { description: 'Anything else (or no answer within BACKEND_TIMEOUT_MS, or over BACKEND_MAX_RESPONSE_BYTES) is a failure: see the summary' },
      },
    },
  };
}

/** OpenAPI 3.1 `webhooks`: the calls stompd makes to the application's backend. */
export const hookWebhooks = {
  send: webhook('A SEND to an app destination (APP_PREFIXES): @MessageMapping. Failure: a non-fatal BACKEND_UNAVAILABLE to the sender', sendCallSchema, sendAnswerSchema, 'send'),
  connect: webhook('Decide a CONNECT: a ChannelInterceptor on CONNECT. Failure: ERROR UNAVAILABLE, never admitted', connectCallSchema, connectAnswerSchema, 'connect'),
  subscribe: webhook('Decide a SUBSCRIBE (BACKEND_SUBSCRIBE_PATTERNS), or answer one to an app destination (@SubscribeMapping)', subscribeCallSchema, subscribeAnswerSchema, 'subscribe'),
  events: webhook('Session events (BACKEND_EVENTS). Failure: retried with back-off, pending events bounded', eventsCallSchema, undefined, 'events'),
  refresh: webhook('A connect-hook login is about to expire (expiresAt). Failure: the session ends with TOKEN_EXPIRED', refreshCallSchema, refreshAnswerSchema, 'refresh'),
} as const;
