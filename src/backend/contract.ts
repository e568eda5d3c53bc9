// The hook contract: what stompd POSTs to the application's backend (BACKEND_URL + /send,
// /connect, /subscribe, /events, /refresh) and what it accepts in answer. These names are
// the contract with applications (and the README, the OpenAPI document and examples/): keep
// them. Types only, plus the checks that turn an untrusted answer into one of them.

/** Fields every call carries: who is asking, from where. */
export interface HookCallBase {
  /** Unique per call: a backend may drop a call it has already seen (retries, at-least-once). */
  id: string;
  instanceId: string;
  sessionId: string;
  /** '' before a user is known (a CONNECT hook without JWT auth). */
  userId: string;
  roles: string[];
  /** What the CONNECT hook answered as `attributes`, else {}. */
  attributes: Record<string, unknown>;
  transport: 'ws' | 'tcp';
  remoteAddress: string;
}

/** A message body as JSON carries it: text, or base64 for bytes that are not UTF-8 text. */
export interface HookBody {
  body?: string;
  bodyBase64?: string;
}

/** POST /send: a SEND to an app destination (APP_PREFIXES). */
export interface SendCall extends HookCallBase, HookBody {
  /** As the client sent it: `/app/chat.send`. */
  destination: string;
  /** The destination with the app prefix removed: `/chat.send` (Spring's @MessageMapping path). */
  lookup: string;
  /** The frame's user headers (not destination, content-length, receipt, transaction, ...). */
  headers: Record<string, string>;
  /** The SEND asked for one: the RECEIPT follows the backend's 2xx and the routing of its messages. */
  receipt?: string;
}

/** One message the backend wants sent. */
export interface OutgoingMessage extends HookBody {
  destination: string;
  headers?: Record<string, string>;
}

export interface UserMessage extends OutgoingMessage {
  /** Every session of this user gets it, on `/user/<userId>` + destination (`/queue/notify`). */
  userId: string;
}

/** An error to report instead of (or besides) messages. */
export interface HookError {
  message: string;
  code?: string;
  /** true: ERROR frame and close; false (default): a MESSAGE on the sender's /user/queue/errors. */
  fatal?: boolean;
}

/** The answer to /send (HTTP 200 JSON; 204: nothing to send). */
export interface SendAnswer extends HookBody {
  /** To any destination (/topic/..., /queue/..., /user/<id>/queue/...), through the cluster like any SEND. */
  publish?: OutgoingMessage[];
  /** SimpMessagingTemplate.convertAndSendToUser. */
  toUser?: UserMessage[];
  /** Only the sending session: `/queue/reply` reaches its `/user/queue/reply` subscription (@SendToUser(broadcast = false)). */
  reply?: OutgoingMessage[];
  /** With `body`/`bodyBase64` alone: published to the topic prefix + lookup (Spring's default for a return value). */
  headers?: Record<string, string>;
  error?: HookError;
}

/** POST /connect: decide a CONNECT (the session cookie of a Spring Security app, say). */
export interface ConnectCall extends HookCallBase {
  /** Every CONNECT header, as the client sent it: untrusted input. */
  connectHeaders: Record<string, string>;
  /** WebSocket handshake headers named in BACKEND_FORWARD_HEADERS (lower-case names); {} over TCP. */
  http: Record<string, string>;
}

export interface Permissions {
  /** Destination patterns (`*` one segment, `**` anything, `{userId}`) this session may subscribe to. */
  subscribe?: string[];
  send?: string[];
}

export interface ConnectAnswer {
  userId?: string;
  roles?: string[];
  attributes?: Record<string, unknown>;
  /** ms since the epoch: the login ends then unless POST /refresh extends it. */
  expiresAt?: number;
  permissions?: Permissions;
  error?: { code?: string; message: string };
}

/** POST /subscribe: a SUBSCRIBE to BACKEND_SUBSCRIBE_PATTERNS, or to an app destination (@SubscribeMapping). */
export interface SubscribeCall extends HookCallBase {
  destination: string;
  /** The app destination with its prefix removed; only for app destinations. */
  lookup?: string;
  /** The SUBSCRIBE's headers but destination, id, ack and receipt. */
  headers: Record<string, string>;
  subscriptionId: string;
}

export interface SubscribeAnswer extends HookBody {
  allow?: boolean;
  /** App destinations: the one MESSAGE's headers. */
  headers?: Record<string, string>;
  error?: { code?: string; message: string };
}

export type SessionEventType = 'CONNECT' | 'DISCONNECT' | 'SUBSCRIBE' | 'UNSUBSCRIBE';

export interface SessionEvent {
  /** Unique; the same on a redelivery, so a backend can drop duplicates. */
  id: string;
  type: SessionEventType;
  sessionId: string;
  userId: string;
  roles: string[];
  attributes: Record<string, unknown>;
  destination?: string;
  /** DISCONNECT: presence's reasons (disconnect, socket-closed, heartbeat-timeout, kicked, logged-out, token-expired, instance-lost, ...). */
  reason?: string;
  /** ms since the epoch. */
  at: number;
  /** The instance that held the session. */
  instanceId: string;
}

/** POST /events: at least once, in order per session, at most MAX_EVENTS_PER_CALL a call. */
export interface EventsCall {
  events: SessionEvent[];
}

export const MAX_EVENTS_PER_CALL = 100;

/** What a session's attributes may weigh (as JSON): each session keeps them and every call carries them. */
export const MAX_ATTRIBUTES_JSON_BYTES = 16 * 1024;

/** POST /refresh: a connect-hook session's login is about to expire. */
export type RefreshCall = HookCallBase & { expiresAt: number };

export interface RefreshAnswer {
  /** The new end of the login (ms since the epoch), later than the current one. */
  expiresAt?: number;
  error?: { code?: string; message: string };
}

export type HookName = 'send' | 'connect' | 'subscribe' | 'events' | 'refresh';

export const HOOK_NAMES: readonly HookName[] = ['send', 'connect', 'subscribe', 'events', 'refresh'];

/** A backend answer that does not follow the contract. */
export class ContractError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ContractError';
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalString(object: Record<string, unknown>, field: string, where: string): string | undefined {
  const value = object[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new ContractError(`${where}.${field} must be a string`);
  return value;
}

function stringMap(value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isRecord(value)) throw new ContractError(`${where} must be an object of strings`);
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(value)) {
    if (typeof v === 'string') out[name] = v;
    else if (typeof v === 'number' || typeof v === 'boolean') out[name] = String(v);
    else throw new ContractError(`${where}.${name} must be a string`);
  }
  return out;
}

function body(object: Record<string, unknown>, where: string): HookBody {
  const text = optionalString(object, 'body', where);
  const base64 = optionalString(object, 'bodyBase64', where);
  if (text !== undefined && base64 !== undefined) throw new ContractError(`${where} has both body and bodyBase64`);
  return { ...(text !== undefined ? { body: text } : {}), ...(base64 !== undefined ? { bodyBase64: base64 } : {}) };
}

function message(value: unknown, where: string): OutgoingMessage {
  if (!isRecord(value)) throw new ContractError(`${where} must be an object`);
  const destination = optionalString(value, 'destination', where);
  if (destination === undefined || destination === '') throw new ContractError(`${where}.destination is required`);
  const headers = stringMap(value.headers, `${where}.headers`);
  return { destination, ...(headers ? { headers } : {}), ...body(value, where) };
}

function messages(value: unknown, where: string): OutgoingMessage[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw new ContractError(`${where} must be an array`);
  return value.map((m, i) => message(m, `${where}[${i}]`));
}

function error(value: unknown, where: string): HookError | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isRecord(value)) throw new ContractError(`${where} must be an object`);
  const text = optionalString(value, 'message', where) ?? '';
  const code = optionalString(value, 'code', where);
  if (value.fatal !== undefined && typeof value.fatal !== 'boolean') throw new ContractError(`${where}.fatal must be a boolean`);
  return { message: text, ...(code !== undefined ? { code } : {}), ...(value.fatal === true ? { fatal: true } : {}) };
}

function answerObject(value: unknown, hook: string): Record<string, unknown> {
  if (!isRecord(value)) throw new ContractError(`the /${hook} answer must be a JSON object`);
  return value;
}

export function parseSendAnswer(value: unknown): SendAnswer {
  const o = answerObject(value, 'send');
  const toUser = messages(o.toUser, 'toUser')?.map((m, i): UserMessage => {
    const userId = ((o.toUser as unknown[])[i] as Record<string, unknown>).userId;
    if (typeof userId !== 'string' || userId === '') throw new ContractError(`toUser[${i}].userId is required`);
    return { ...m, userId };
  });
  const publish = messages(o.publish, 'publish');
  const reply = messages(o.reply, 'reply');
  const headers = stringMap(o.headers, 'headers');
  const err = error(o.error, 'error');
  return {
    ...(publish ? { publish } : {}),
    ...(toUser ? { toUser } : {}),
    ...(reply ? { reply } : {}),
    ...(headers ? { headers } : {}),
    ...body(o, 'answer'),
    ...(err ? { error: err } : {}),
  };
}

function stringList(value: unknown, where: string): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new ContractError(`${where} must be an array of strings`);
  return value;
}

function timestamp(value: unknown, where: string): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw new ContractError(`${where} must be ms since the epoch`);
  return value;
}

export function parseConnectAnswer(value: unknown): ConnectAnswer {
  const o = answerObject(value, 'connect');
  const err = error(o.error, 'error');
  if (err !== undefined) return { error: { message: err.message, ...(err.code !== undefined ? { code: err.code } : {}) } };
  const userId = optionalString(o, 'userId', 'answer');
  const roles = stringList(o.roles, 'roles');
  if (o.attributes !== undefined && o.attributes !== null && !isRecord(o.attributes)) throw new ContractError('attributes must be an object');
  // Kept for the session's life and sent with every call: a small map, not a document.
  if (isRecord(o.attributes) && JSON.stringify(o.attributes).length > MAX_ATTRIBUTES_JSON_BYTES) throw new ContractError(`attributes must be at most ${MAX_ATTRIBUTES_JSON_BYTES} bytes as JSON`);
  const expiresAt = timestamp(o.expiresAt, 'expiresAt');
  let permissions: Permissions | undefined;
  if (o.permissions !== undefined && o.permissions !== null) {
    if (!isRecord(o.permissions)) throw new ContractError('permissions must be an object');
    const subscribe = stringList(o.permissions.subscribe, 'permissions.subscribe');
    const send = stringList(o.permissions.send, 'permissions.send');
    permissions = { ...(subscribe ? { subscribe } : {}), ...(send ? { send } : {}) };
  }
  return {
    ...(userId !== undefined ? { userId } : {}),
    ...(roles ? { roles } : {}),
    ...(isRecord(o.attributes) ? { attributes: o.attributes } : {}),
    ...(expiresAt !== undefined ? { expiresAt } : {}),
    ...(permissions ? { permissions } : {}),
  };
}

export function parseSubscribeAnswer(value: unknown): SubscribeAnswer {
  const o = answerObject(value, 'subscribe');
  const err = error(o.error, 'error');
  const headers = stringMap(o.headers, 'headers');
  return {
    ...(o.allow === true ? { allow: true } : {}),
    ...(headers ? { headers } : {}),
    ...body(o, 'answer'),
    ...(err ? { error: { message: err.message, ...(err.code !== undefined ? { code: err.code } : {}) } } : {}),
  };
}

export function parseRefreshAnswer(value: unknown): RefreshAnswer {
  const o = answerObject(value, 'refresh');
  const err = error(o.error, 'error');
  if (err !== undefined) return { error: { message: err.message, ...(err.code !== undefined ? { code: err.code } : {}) } };
  const expiresAt = timestamp(o.expiresAt, 'expiresAt');
  return expiresAt !== undefined ? { expiresAt } : {};
}
