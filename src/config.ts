// Configuration: read once from the environment into one typed, frozen Config.
// Every variable has one row in SETTINGS (README mirrors this table); a bad value throws
// ConfigError naming the variable, which main prints as one line before exiting.

import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { DecoderLimits } from './codec';
import type { HeartbeatSetting } from './session/heartbeat';
import { parseHeartbeat } from './session/heartbeat';
import type { HookName } from './backend/contract';
import type { SlowConsumerPolicy } from './session/session';
import type { FlowSettings } from './broker/flow';
import type { ForwardedHeader } from './transport/forwarded';
import { TrustedProxies } from './transport/trusted-proxies';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export type SingleSessionMode = 'off' | 'reject' | 'replace';

export type AuthMode = 'jwt' | 'users' | 'none';

export interface JwtConfig {
  /** HS256/384/512 shared secret. */
  secret: string | undefined;
  /** PEM public key (SPKI) for RS*, PS*, ES* or EdDSA. */
  publicKeyPem: string | undefined;
  /** JWKS endpoint, cached, refetched on an unknown kid. */
  jwksUrl: string | undefined;
  issuer: string | undefined;
  audience: string | undefined;
  clockToleranceS: number;
  /** Claim holding the user id. */
  userClaim: string;
  /** Claims holding the role(s), first present wins: a string or an array of strings. */
  roleClaims: string[];
  /** Refuse tokens without an exp claim (they would be valid for the whole session, forever). */
  requireExp: boolean;
}

export interface Config {
  host: string;
  /** undefined: this transport is off. 0: any free port. */
  stompPort: number | undefined;
  wsPort: number | undefined;
  wsPath: string;
  /** SockJS endpoint on the WebSocket port (Spring's `.withSockJS()` clients); undefined: off. */
  sockjsPath: string | undefined;
  heartbeat: HeartbeatSetting;
  heartbeatMinMs: number;
  heartbeatGrace: number;
  connectTimeoutMs: number;
  /** A frame begun must be complete within this. */
  frameTimeoutMs: number;
  /** WebSocket: TCP connect to completed upgrade. */
  handshakeTimeoutMs: number;
  /** 0: no cap. */
  maxConnections: number;
  /** 0: no cap. */
  maxConnectionsPerAddress: number;
  /** Past it, stop() destroys whatever is still open. */
  shutdownTimeoutMs: number;
  limits: DecoderLimits;
  writeBufferLimitBytes: number;
  /** After a flush pass over many connections (a fan-out), the next waits until this long after it; 0: every turn. */
  writeCoalesceMs: number;
  /** The widest that wait grows while the event loop is saturated (src/transport/connection.ts). */
  writeCoalesceMaxMs: number;
  slowConsumerPolicy: SlowConsumerPolicy;
  /** Publisher flow control (FLOW_CONTROL=on); undefined: off. */
  flowControl: FlowSettings | undefined;
  /** Past this many unsent bytes a subscriber is behind (flow control's mark, below the write limit). */
  flowBehindBytes: number;
  /** Bytes of other instances' messages that may wait for their fan-out here; past it the oldest are dropped. */
  relayBacklogBytes: number;
  topicPrefix: string;
  queuePrefix: string;
  maxQueueMessages: number;
  /** Bytes one queue holds (stored and unacknowledged messages); past it the oldest stored are dropped. */
  maxQueueBytes: number;
  /** Bytes all queues hold together; a SEND past it is refused (QUEUE_FULL). */
  maxTotalQueueBytes: number;
  /** Queues that may exist at once; a SEND creating one more is refused (QUEUE_LIMIT). */
  maxQueues: number;
  /** Bytes of frames in progress and held by transactions, all connections together (SERVER_BUSY past it). */
  maxPendingFrameBytes: number;
  maxTransactionFrames: number;
  maxTransactionBytes: number;
  maxSubscriptionsPerSession: number;
  /** What one session's subscriptions may cost (ids, destinations, objects), counted as subscriptionHeldBytes. */
  maxSubscriptionBytesPerSession: number;
  maxUnacked: number;
  serverName: string;
  logLevel: LogLevel;
  /**
   * `jwt`: a valid token is required; `users`: login and passcode checked against USERS_FILE;
   * `none`: the login header is the user id (embedded).
   */
  authMode: AuthMode;
  jwt: JwtConfig;
  singleSession: SingleSessionMode;
  /** 0: no limit. */
  maxSessionsPerUser: number;
  userPrefix: string;
  aclFile: string | undefined;
  /** Login/passcode users (AUTH=users), re-read on SIGHUP. */
  usersFile: string | undefined;
  /** WebSocket Origin allow-list; empty: any origin (a cookie credential: the server's own origin only). */
  allowedOrigins: string[];
  /** Besides loopback names, the Host names answered where no credential is asked (AUTH=none, an open HTTP API); `*`: any. */
  allowedHosts: string[];
  /** Unique per start; names this process in Redis. */
  instanceId: string;
  /** How long a logout's revocation is kept: longer than any accepted token lives. */
  revocationTtlSeconds: number;
  /** undefined: embedded mode (nothing Redis-related is loaded). */
  redis: RedisConfig | undefined;
  /** Destination patterns (`*`, `**`) that are rooms: subscribing joins, leaving announces. */
  presenceDestinations: string[];
  /** Events also go to `<room><suffix>` when set; such destinations are never rooms themselves. */
  presenceCompanionSuffix: string | undefined;
  http: HttpConfig;
  /** undefined: no backend hooks (nothing of src/backend or undici is loaded). */
  backend: BackendConfig | undefined;
  /** A SEND here with a `token` header swaps the session's JWT in-band. */
  tokenRefreshDestination: string;
  /** Peers (addresses, CIDR blocks) whose PROXY header or X-Forwarded-For / Forwarded names the client. */
  trustedProxies: string[];
  /** The plain TCP listener expects a PROXY protocol header from trusted proxies. */
  proxyProtocol: boolean;
  /** Which of the two headers the WebSocket handshake's trusted proxies set. */
  forwardedHeader: ForwardedHeader;
  /** undefined: no TLS listeners. */
  tls: TlsConfig | undefined;
}

export type SessionEventName = 'connect' | 'disconnect' | 'subscribe' | 'unsubscribe';

export interface BackendConfig {
  /** Hooks POST to this + /send, /connect, /subscribe, /events, /refresh. */
  url: string;
  hooks: ReadonlySet<HookName>;
  /** Destinations whose SENDs (and SUBSCRIBEs) the backend handles: `/app/`. */
  appPrefixes: string[];
  timeoutMs: number;
  /** HMAC-SHA256 key for x-stompd-signature; undefined: calls are not signed. */
  secret: string | undefined;
  maxResponseBytes: number;
  /** WebSocket handshake headers the CONNECT hook sees (lower case). */
  forwardHeaders: string[];
  /** SUBSCRIBEs to these patterns ask the subscribe hook. */
  subscribePatterns: string[];
  events: ReadonlySet<SessionEventName>;
  /** Hook calls under way at once on this instance; more wait (their sessions stop being read). */
  maxInFlight: number;
  /** Keep-alive connections in the pool. */
  connections: number;
  /** Session events kept while the backend does not take them; past it the oldest are dropped. */
  maxPendingEvents: number;
}

export interface TlsConfig {
  certFile: string;
  keyFile: string;
  caFile: string | undefined;
  /** undefined: this TLS listener is off. 0: any free port. */
  stompTlsPort: number | undefined;
  wssPort: number | undefined;
}

export interface HttpConfig {
  /** undefined: the HTTP API is off. 0: any free port. */
  port: number | undefined;
  /** Where it listens: HTTP_HOST, else HOST; loopback when no admin credential is configured. */
  host: string;
  /** Bearer token that opens every /api route; undefined: none (JWT admins only, or loopback). */
  adminToken: string | undefined;
  /** A JWT carrying one of these roles is an admin (AUTH=jwt). */
  adminRoles: string[];
  /** Neither ADMIN_TOKEN nor JWT auth: /api is open, so it listens on loopback only. */
  isOpen: boolean;
  /** /metrics needs `Bearer <metricsToken>` or an admin credential; false: public. */
  isMetricsGuarded: boolean;
  /** Bearer token for /metrics alone (METRICS_TOKEN). */
  metricsToken: string | undefined;
  /** Queues given series of their own in /metrics, the deepest first; 0: totals only. */
  metricsQueueSeries: number;
  /** DEMO=1: the chat demo at /demo (and its rooms, /topic/demo.*, are presence rooms). */
  isDemo: boolean;
}

export interface RedisConfig {
  /** A single Redis (redis://[user:pass@]host:port[/db], rediss:// for TLS)... */
  url: string | undefined;
  /** ...or the seed nodes of a Redis Cluster. */
  clusterNodes: { host: string; port: number }[] | undefined;
  /** Prepended to every key and channel. */
  prefix: string;
  sessionTtlSeconds: number;
  /** How often this instance refreshes its liveness key (TTL: three times this). */
  instanceHeartbeatMs: number;
}

export class ConfigError extends Error {
  readonly variable: string;

  constructor(variable: string, value: string, expected: string) {
    super(`${variable}=${JSON.stringify(redactUrls(value))}: ${expected}`);
    this.name = 'ConfigError';
    this.variable = variable;
  }
}

/**
 * A value as an error line may show it: the password (or token) inside any URL's user info
 * and every query string and fragment are masked, since a REDIS_URL or JWT_JWKS_URL may carry
 * a secret there and start errors end up in terminals, CI logs and support tickets. The value
 * is invalid when this runs, most often because its password holds a character it should have
 * percent-encoded (`/`, `?`, `#`, `@`, a space): so the user info runs to the last `@` before
 * the next URL, whatever it holds (an `@` in a path masks the host too: more, never less).
 */
export function redactUrls(value: string): string {
  return value.replace(/([a-z][a-z0-9+.-]*:\/\/)([\s\S]*?)(?=[a-z][a-z0-9+.-]*:\/\/|$)/gi, (_all, scheme: string, rest: string) => {
    const at = rest.lastIndexOf('@');
    let shown = rest;
    let userShown = '';
    if (at !== -1) {
      const colon = rest.indexOf(':');
      userShown = colon === -1 || colon > at ? '***@' : `${rest.slice(0, colon)}:***@`;
      shown = rest.slice(at + 1);
    }
    return `${scheme}${userShown}${shown.replace(/([?#])\S*/, '$1***')}`;
  });
}

/** Whether `value` parses as a URL with one of `schemes` (a `new URL` failure names nothing). */
function isUrl(value: string, schemes: readonly string[]): boolean {
  try {
    return schemes.includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

type Env = Readonly<Record<string, string | undefined>>;

function port(allowOff: boolean) {
  return (value: string): number | undefined => {
    if (allowOff && value === 'off') return undefined;
    if (!/^\d{1,5}$/.test(value) || Number(value) > 65535) return Number.NaN;
    return Number(value);
  };
}

function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) return Number.NaN;
    const n = Number(value);
    return n >= min && n <= max ? n : Number.NaN;
  };
}

/** A share strictly between 0 and 1, written as a decimal ("0.5"). */
function share(value: string): number {
  if (!/^(0?\.\d+|0|1)$/.test(value)) return Number.NaN;
  const n = Number(value);
  return n > 0 && n < 1 ? n : Number.NaN;
}

function isInvalid(parsed: unknown): boolean {
  return parsed === null || (typeof parsed === 'number' && Number.isNaN(parsed));
}

const optional = (v: string): string => v;

/**
 * A subscriber with more than this unsent is behind (FLOW_CONTROL_BEHIND_BYTES). A mark a few
 * messages deep makes holds start and end every few messages, and the pipe runs dry between
 * them: at 8 KiB × 1,000 subscribers, 64 KiB (8 messages) gave 0.33 M deliveries/s at max rate
 * and this (32 messages) 0.58 M/s; at 100 B the kernel's socket buffers set the latency either way.
 */
const DEFAULT_FLOW_BEHIND_BYTES = 262144;
/** Never echoed in an error line. */
const SECRET_VARIABLES = new Set(['JWT_SECRET', 'ADMIN_TOKEN', 'METRICS_TOKEN', 'BACKEND_SECRET']);
const list = (v: string): string[] =>
  v
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
/** Only the type comes from the contract: without BACKEND_URL nothing of src/backend/ is loaded. */
const HOOK_NAMES: readonly HookName[] = ['send', 'connect', 'subscribe', 'events', 'refresh'];
const EVENT_NAMES: readonly SessionEventName[] = ['connect', 'disconnect', 'subscribe', 'unsubscribe'];
function listOf<T extends string>(allowed: readonly T[]) {
  return (v: string): T[] | null => (list(v).every((item) => (allowed as readonly string[]).includes(item)) ? (list(v) as T[]) : null);
}

/** variable → [default, parser (null or NaN = invalid), what a valid value looks like] */
const SETTINGS = {
  HOST: ['127.0.0.1', (v: string) => (v.trim() === '' ? null : v), 'a host name or address to listen on'],
  STOMP_PORT: ['61613', port(true), 'a TCP port (0-65535) or "off"'],
  WS_PORT: ['15674', port(true), 'a TCP port (0-65535) or "off"'],
  STOMP_TLS_PORT: ['61614', port(true), 'a TCP port (0-65535) or "off" (used when TLS_CERT_FILE is set)'],
  WSS_PORT: ['15673', port(true), 'a TCP port (0-65535) or "off" (used when TLS_CERT_FILE is set)'],
  TLS_CERT_FILE: ['', optional, 'a path to a PEM certificate (chain): turns on STOMP_TLS_PORT and WSS_PORT'],
  TLS_KEY_FILE: ['', optional, 'a path to the PEM private key of TLS_CERT_FILE'],
  TLS_CA_FILE: ['', optional, 'a path to PEM CA certificates: clients of the TLS ports must present a certificate they signed'],
  TRUSTED_PROXIES: ['', (v: string) => (isTrustedProxyList(list(v)) ? list(v) : null), 'IP addresses or CIDR blocks (IPv4 or IPv6), comma-separated'],
  PROXY_PROTOCOL: ['0', (v: string) => (v === '0' || v === '1' ? v === '1' : null), '"0" or "1"'],
  FORWARDED_HEADER: ['x-forwarded-for', (v: string) => (v === 'x-forwarded-for' || v === 'forwarded' ? v : null), '"x-forwarded-for" or "forwarded"'],
  WS_PATH: ['/ws', (v: string) => (v.startsWith('/') ? v : null), 'a path starting with "/"'],
  // sockjs builds a RegExp from the prefix as it is: only characters with no meaning there.
  SOCKJS_PATH: ['', (v: string) => (v === '' || /^(\/[A-Za-z0-9_~-]+)+$/.test(v) ? v : null), 'a path such as "/stomp": "/"-separated letters, digits, "_", "~" or "-", no trailing "/" (empty: SockJS off)'],
  HEARTBEAT: ['10000,10000', (v: string) => parseHeartbeat(v) ?? null, 'two non-negative integers "sx,sy" in ms: how often we can send, how often we want to hear'],
  HEARTBEAT_MIN_MS: ['100', integer(1, 3_600_000), 'an integer from 1 to 3600000 (ms)'],
  HEARTBEAT_GRACE: ['2', (v: string) => (/^\d+(\.\d+)?$/.test(v) && Number(v) >= 1 ? Number(v) : Number.NaN), 'a number >= 1'],
  CONNECT_TIMEOUT_MS: ['10000', integer(1, 3_600_000), 'an integer from 1 to 3600000 (ms)'],
  FRAME_TIMEOUT_MS: ['30000', integer(1, 3_600_000), 'an integer from 1 to 3600000 (ms)'],
  HANDSHAKE_TIMEOUT_MS: ['10000', integer(1, 3_600_000), 'an integer from 1 to 3600000 (ms)'],
  MAX_CONNECTIONS: ['100000', integer(0), 'a non-negative integer (0: no limit)'],
  MAX_CONNECTIONS_PER_ADDRESS: ['1000', integer(0), 'a non-negative integer (0: no limit)'],
  SHUTDOWN_TIMEOUT_MS: ['5000', integer(1, 3_600_000), 'an integer from 1 to 3600000 (ms)'],
  MAX_FRAME_BYTES: ['4194304', integer(256), 'an integer >= 256 (bytes)'],
  MAX_HEADERS: ['64', integer(1, 100000), 'an integer from 1 to 100000'],
  MAX_HEADER_LINE_BYTES: ['8192', integer(64), 'an integer >= 64 (bytes)'],
  WRITE_BUFFER_LIMIT_BYTES: ['1048576', integer(1024), 'an integer >= 1024 (bytes)'],
  WRITE_COALESCE_MS: ['1', integer(0, 100), 'an integer from 0 to 100 (ms; 0: off)'],
  WRITE_COALESCE_MAX_MS: ['8', integer(0, 100), 'an integer from 0 to 100 (ms)'],
  SLOW_CONSUMER_POLICY: ['drop', (v: string) => (v === 'drop' || v === 'disconnect' ? v : null), '"drop" or "disconnect"'],
  FLOW_CONTROL: ['on', (v: string) => (v === 'on' || v === 'off' ? v === 'on' : null), '"on" or "off"'],
  FLOW_CONTROL_BEHIND_BYTES: ['', (v: string) => (v === '' ? 0 : integer(1024)(v)), 'an integer >= 1024 (bytes), at most WRITE_BUFFER_LIMIT_BYTES (default: 262144, or half of WRITE_BUFFER_LIMIT_BYTES if that is less)'],
  FLOW_CONTROL_BEHIND_SHARE: ['0.5', share, 'a decimal between 0 and 1, e.g. 0.5'],
  FLOW_CONTROL_WINDOW: ['32', integer(1, 1_000_000), 'an integer from 1 to 1000000 (deliveries)'],
  FLOW_CONTROL_STALL_MS: ['2000', integer(10, 600_000), 'an integer from 10 to 600000 (ms)'],
  FLOW_CONTROL_MAX_HOLD_MS: ['10000', integer(10, 3_600_000), 'an integer from 10 to 3600000 (ms)'],
  RELAY_BACKLOG_BYTES: ['67108864', integer(65536), 'an integer >= 65536 (bytes)'],
  TOPIC_PREFIX: ['/topic/', (v: string) => (v.startsWith('/') && v.endsWith('/') && v.length > 2 ? v : null), 'a destination prefix starting and ending with "/"'],
  QUEUE_PREFIX: ['/queue/', (v: string) => (v.startsWith('/') && v.endsWith('/') && v.length > 2 ? v : null), 'a destination prefix starting and ending with "/"'],
  MAX_QUEUE_MESSAGES: ['10000', integer(1), 'a positive integer'],
  MAX_QUEUE_BYTES: ['268435456', integer(1), 'a positive integer (bytes)'],
  MAX_TOTAL_QUEUE_BYTES: ['1073741824', integer(1), 'a positive integer (bytes)'],
  MAX_QUEUES: ['100000', integer(1), 'a positive integer'],
  MAX_PENDING_FRAME_BYTES: ['536870912', integer(1024), 'an integer >= 1024 (bytes)'],
  MAX_TRANSACTION_FRAMES: ['1000', integer(1), 'a positive integer'],
  MAX_TRANSACTION_BYTES: ['8388608', integer(0), 'a non-negative integer (bytes)'],
  MAX_SUBSCRIPTIONS_PER_SESSION: ['1000', integer(1), 'a positive integer'],
  MAX_SUBSCRIPTION_BYTES_PER_SESSION: ['2097152', integer(1024), 'an integer >= 1024 (bytes)'],
  MAX_UNACKED: ['1000', integer(1), 'a positive integer'],
  SERVER_NAME: ['stompd/0.1.0', (v: string) => (/^[^\r\n:]+$/.test(v) ? v : null), 'a name without ":" or line breaks'],
  AUTH: ['auto', (v: string) => (v === 'auto' || v === 'jwt' || v === 'users' || v === 'none' ? v : null), '"jwt", "users", "none" or "auto" (jwt when a JWT key is set, users when USERS_FILE is)'],
  USERS_FILE: ['', optional, 'a path to a JSON users file (AUTH=users)'],
  ALLOW_INSECURE_AUTH: ['0', (v: string) => (v === '0' || v === '1' ? v === '1' : null), '"0" or "1"'],
  JWT_SECRET: ['', (v: string) => (v === '' || Buffer.byteLength(v) >= 32 ? v : null), 'at least 32 bytes (HS256 needs a 256-bit secret)'],
  JWT_PUBLIC_KEY: ['', (v: string) => (v === '' || v.includes('-----BEGIN PUBLIC KEY-----') ? v.replace(/\\n/g, '\n') : null), 'a PEM public key ("-----BEGIN PUBLIC KEY-----" ...)'],
  JWT_JWKS_URL: ['', (v: string) => (v === '' || (/^https?:\/\/\S+$/.test(v) && isUrl(v, ['http:', 'https:'])) ? v : null), 'an http(s) URL'],
  JWT_ISSUER: ['', optional, 'the expected iss claim'],
  JWT_AUDIENCE: ['', optional, 'the expected aud claim'],
  JWT_CLOCK_TOLERANCE_S: ['5', integer(0, 3600), 'an integer from 0 to 3600 (seconds)'],
  JWT_USER_CLAIM: ['sub', (v: string) => (v.trim() === '' ? null : v), 'a claim name'],
  JWT_REQUIRE_EXP: ['1', (v: string) => (v === '0' || v === '1' ? v === '1' : null), '"0" or "1" (1: a token without exp is refused)'],
  JWT_ROLE_CLAIM: ['role,roles', (v: string) => (list(v).length > 0 ? list(v) : null), 'claim names, comma-separated'],
  SINGLE_SESSION: ['off', (v: string) => (v === 'off' || v === 'reject' || v === 'replace' ? v : null), '"off", "reject" or "replace"'],
  MAX_SESSIONS_PER_USER: ['0', integer(0), 'a non-negative integer (0: no limit)'],
  USER_PREFIX: ['/user/', (v: string) => (v.startsWith('/') && v.endsWith('/') && v.length > 2 ? v : null), 'a prefix starting and ending with "/"'],
  ACL_FILE: ['', optional, 'a path to a JSON rules file'],
  ALLOWED_ORIGINS: ['', list, 'origins, comma-separated'],
  ALLOWED_HOSTS: ['', (v: string) => (list(v).every((h) => /^[^\s/?#@\\]+$/.test(h)) ? list(v).map((h) => h.toLowerCase()) : null), 'host names, comma-separated, or "*"'],
  INSTANCE_ID: ['', (v: string) => (v === '' || /^[A-Za-z0-9._-]{1,100}$/.test(v) ? v : null), 'letters, digits, ".", "_" or "-" (default: host name, pid and a random part)'],
  REDIS_URL: ['', (v: string) => (v === '' || (/^rediss?:\/\/\S+$/.test(v) && isUrl(v, ['redis:', 'rediss:'])) ? v : null), 'a redis:// or rediss:// URL'],
  REDIS_CLUSTER_NODES: ['', (v: string) => (v === '' || list(v).every((n) => /^[^\s:]+:\d{1,5}$/.test(n)) ? v : null), 'host:port pairs, comma-separated'],
  REDIS_PREFIX: ['ws:', (v: string) => (/^[^\s{}]{0,64}$/.test(v) ? v : null), 'up to 64 characters, no spaces or braces'],
  SESSION_TTL_SECONDS: ['86400', integer(60, 31_536_000), 'an integer from 60 to 31536000 (seconds)'],
  REVOCATION_TTL_SECONDS: ['86400', integer(1, 31_536_000), 'an integer from 1 to 31536000 (seconds)'],
  INSTANCE_HEARTBEAT_MS: ['2000', integer(100, 60_000), 'an integer from 100 to 60000 (ms)'],
  PRESENCE_DESTINATIONS: ['', (v: string) => (list(v).every((d) => d.startsWith('/')) ? list(v) : null), 'destination patterns starting with "/", comma-separated (* one segment, ** any)'],
  PRESENCE_COMPANION_SUFFIX: ['', (v: string) => (v === '' || /^[^\s*{}]{1,64}$/.test(v) ? v : null), 'up to 64 characters, no spaces, "*" or braces'],
  HTTP_PORT: ['8080', port(true), 'a TCP port (0-65535) or "off"'],
  HTTP_HOST: ['', optional, 'a host name or address for the HTTP API (default: HOST)'],
  ADMIN_TOKEN: ['', (v: string) => (v === '' || (Buffer.byteLength(v) >= 16 && /^[\x21-\x7e]+$/.test(v)) ? v : null), 'at least 16 printable characters without spaces'],
  METRICS_TOKEN: ['', (v: string) => (v === '' || (Buffer.byteLength(v) >= 16 && /^[\x21-\x7e]+$/.test(v)) ? v : null), 'at least 16 printable characters without spaces'],
  METRICS_AUTH: [
    'auto',
    (v: string) => (v === 'auto' || v === 'public' || v === 'credential' ? v : null),
    '"public", "credential" (METRICS_TOKEN or an admin credential) or "auto" (credential when METRICS_TOKEN is set)',
  ],
  METRICS_QUEUE_SERIES: ['20', integer(0, 10_000), 'an integer from 0 to 10000 (0: totals only)'],
  ADMIN_ROLES: ['ADMIN', (v: string) => (list(v).length > 0 ? list(v) : null), 'role names, comma-separated'],
  DEMO: ['0', (v: string) => (v === '0' || v === '1' ? v === '1' : null), '"0" or "1" (1: the chat demo at /demo on the HTTP port)'],
  BACKEND_URL: ['', (v: string) => (v === '' || /^https?:\/\/[^\s?#]+$/.test(v) ? v.replace(/\/+$/, '') : null), 'an http(s) URL without query, e.g. http://127.0.0.1:3000/stomp'],
  BACKEND_HOOKS: ['', listOf(HOOK_NAMES), `hook names, comma-separated: ${HOOK_NAMES.join(', ')} (default: send)`],
  APP_PREFIXES: [
    '/app/',
    (v: string) => (list(v).length > 0 && list(v).every((d) => d.startsWith('/') && d.endsWith('/') && d.length > 2) ? list(v) : null),
    'destination prefixes starting and ending with "/", comma-separated',
  ],
  BACKEND_TIMEOUT_MS: ['2000', integer(1, 600_000), 'an integer from 1 to 600000 (ms)'],
  BACKEND_SECRET: ['', (v: string) => (v === '' || Buffer.byteLength(v) >= 16 ? v : null), 'at least 16 bytes'],
  BACKEND_MAX_RESPONSE_BYTES: ['1048576', integer(1024), 'an integer >= 1024 (bytes)'],
  BACKEND_FORWARD_HEADERS: ['cookie,origin,authorization,user-agent', (v: string) => list(v).map((h) => h.toLowerCase()), 'header names, comma-separated'],
  BACKEND_SUBSCRIBE_PATTERNS: ['', (v: string) => (list(v).every((d) => d.startsWith('/')) ? list(v) : null), 'destination patterns starting with "/", comma-separated (* one segment, ** any)'],
  BACKEND_EVENTS: ['connect,disconnect,subscribe,unsubscribe', listOf(EVENT_NAMES), 'event names, comma-separated: connect, disconnect, subscribe, unsubscribe'],
  BACKEND_MAX_IN_FLIGHT: ['512', integer(1, 100_000), 'an integer from 1 to 100000'],
  BACKEND_CONNECTIONS: ['32', integer(1, 10_000), 'an integer from 1 to 10000'],
  BACKEND_MAX_PENDING_EVENTS: ['100000', integer(100), 'an integer >= 100'],
  TOKEN_REFRESH_DESTINATION: ['/stompd/token', (v: string) => (v.startsWith('/') && !/\s/.test(v) ? v : null), 'a destination starting with "/"'],
  LOG_LEVEL: ['info', (v: string) => (['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(v) ? v : null), 'one of fatal, error, warn, info, debug, trace, silent'],
} as const;

type Settings = typeof SETTINGS;
type Parsed = { [K in keyof Settings]: Exclude<ReturnType<Settings[K][1]>, null> };

export const CONFIG_DEFAULTS: Readonly<Record<keyof Settings, string>> = Object.freeze(Object.fromEntries(Object.entries(SETTINGS).map(([name, [fallback]]) => [name, fallback])) as Record<keyof Settings, string>);

/** Every variable with its default and what a valid value looks like: what `stompd --help` prints. */
export const SETTING_DESCRIPTIONS: readonly { variable: string; fallback: string; expected: string }[] = Object.freeze(
  Object.entries(SETTINGS).map(([variable, [fallback, , expected]]) => Object.freeze({ variable, fallback, expected })),
);

export function loadConfig(env: Env): Readonly<Config> {
  const parsed = {} as Record<string, unknown>;
  for (const [name, [fallback, parse, expected]] of Object.entries(SETTINGS)) {
    const raw = env[name];
    const value = raw === undefined || raw === '' ? fallback : raw;
    const result = (parse as (v: string) => unknown)(value);
    if (isInvalid(result)) throw new ConfigError(name, SECRET_VARIABLES.has(name) ? '(hidden)' : value, `expected ${expected}`);
    parsed[name] = result;
  }
  const p = parsed as Parsed;
  // Below the write limit: a publisher is held before its subscribers reach the slow-consumer policy.
  const flowBehindBytes = p.FLOW_CONTROL_BEHIND_BYTES === 0 ? Math.min(DEFAULT_FLOW_BEHIND_BYTES, Math.floor(p.WRITE_BUFFER_LIMIT_BYTES / 2)) : p.FLOW_CONTROL_BEHIND_BYTES;
  if (flowBehindBytes > p.WRITE_BUFFER_LIMIT_BYTES) {
    throw new ConfigError('FLOW_CONTROL_BEHIND_BYTES', String(flowBehindBytes), `expected at most WRITE_BUFFER_LIMIT_BYTES (${p.WRITE_BUFFER_LIMIT_BYTES}): a subscriber must be behind before its messages are dropped`);
  }
  if (p.FLOW_CONTROL_MAX_HOLD_MS < p.FLOW_CONTROL_STALL_MS) {
    throw new ConfigError('FLOW_CONTROL_MAX_HOLD_MS', String(p.FLOW_CONTROL_MAX_HOLD_MS), `expected at least FLOW_CONTROL_STALL_MS (${p.FLOW_CONTROL_STALL_MS})`);
  }
  if (p.TOPIC_PREFIX.startsWith(p.QUEUE_PREFIX) || p.QUEUE_PREFIX.startsWith(p.TOPIC_PREFIX)) {
    throw new ConfigError('QUEUE_PREFIX', p.QUEUE_PREFIX, `expected a prefix that neither starts nor is started by TOPIC_PREFIX (${p.TOPIC_PREFIX})`);
  }
  // The demo is a page on the HTTP port whose client connects to the WebSocket port.
  if (p.DEMO && (p.HTTP_PORT === undefined || p.WS_PORT === undefined)) {
    throw new ConfigError('DEMO', '1', `expected ${p.HTTP_PORT === undefined ? 'HTTP_PORT' : 'WS_PORT'} not "off": the demo is a page on the HTTP port that connects over WebSocket`);
  }
  for (const other of [p.TOPIC_PREFIX, p.QUEUE_PREFIX]) {
    if (other.startsWith(p.USER_PREFIX) || p.USER_PREFIX.startsWith(other)) {
      throw new ConfigError('USER_PREFIX', p.USER_PREFIX, `expected a prefix that neither starts nor is started by ${other}`);
    }
  }
  const hasJwtKey = p.JWT_SECRET !== '' || p.JWT_PUBLIC_KEY !== '' || p.JWT_JWKS_URL !== '';
  const authMode: AuthMode = p.AUTH === 'auto' ? (hasJwtKey ? 'jwt' : p.USERS_FILE !== '' ? 'users' : 'none') : p.AUTH;
  if (authMode === 'jwt' && !hasJwtKey) {
    throw new ConfigError('AUTH', 'jwt', 'expected JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL to be set');
  }
  if (authMode === 'users' && p.USERS_FILE === '') {
    throw new ConfigError('AUTH', 'users', 'expected USERS_FILE to be set: the users whose login and passcode are checked');
  }
  const backend = backendConfig(p);
  // A CONNECT hook decides who connects: the login header is not trusted then.
  if (authMode === 'none' && !isLoopback(p.HOST) && !p.ALLOW_INSECURE_AUTH && backend?.hooks.has('connect') !== true) {
    throw new ConfigError('AUTH', 'none', `unauthenticated mode listens on loopback only, not HOST=${p.HOST}: configure a JWT key or USERS_FILE, or set ALLOW_INSECURE_AUTH=1`);
  }
  if (p.REDIS_URL !== '' && p.REDIS_CLUSTER_NODES !== '') {
    throw new ConfigError('REDIS_CLUSTER_NODES', p.REDIS_CLUSTER_NODES, 'expected either REDIS_URL or REDIS_CLUSTER_NODES, not both');
  }
  // Rooms are topics: a JOIN published to a queue would go to one consumer, not the room.
  const notTopic = p.PRESENCE_DESTINATIONS.find((pattern) => !pattern.startsWith(p.TOPIC_PREFIX));
  if (notTopic !== undefined) {
    throw new ConfigError('PRESENCE_DESTINATIONS', p.PRESENCE_DESTINATIONS.join(','), `expected topic patterns: ${JSON.stringify(notTopic)} does not start with TOPIC_PREFIX (${p.TOPIC_PREFIX})`);
  }
  if ((p.TLS_CERT_FILE === '') !== (p.TLS_KEY_FILE === '')) {
    const [missing, set] = p.TLS_CERT_FILE === '' ? ['TLS_CERT_FILE', 'TLS_KEY_FILE'] : ['TLS_KEY_FILE', 'TLS_CERT_FILE'];
    throw new ConfigError(missing, '', `expected a path: ${set} is set, and TLS needs both a certificate and its key`);
  }
  if (p.TLS_CA_FILE !== '' && p.TLS_CERT_FILE === '') throw new ConfigError('TLS_CERT_FILE', '', 'expected a path: TLS_CA_FILE (client certificates) needs the TLS listeners, which need TLS_CERT_FILE and TLS_KEY_FILE');
  const tls: TlsConfig | undefined = p.TLS_CERT_FILE === '' ? undefined : { certFile: p.TLS_CERT_FILE, keyFile: p.TLS_KEY_FILE, caFile: p.TLS_CA_FILE || undefined, stompTlsPort: p.STOMP_TLS_PORT, wssPort: p.WSS_PORT };
  if (p.STOMP_PORT === undefined && p.WS_PORT === undefined && (tls === undefined || (tls.stompTlsPort === undefined && tls.wssPort === undefined))) {
    throw new ConfigError('STOMP_PORT', 'off', 'expected a port: STOMP_PORT and WS_PORT cannot both be off without a TLS listener (TLS_CERT_FILE with STOMP_TLS_PORT or WSS_PORT)');
  }
  if (p.PROXY_PROTOCOL && p.TRUSTED_PROXIES.length === 0) {
    throw new ConfigError('TRUSTED_PROXIES', '', "expected the proxies' addresses: PROXY_PROTOCOL=1 believes PROXY headers from TRUSTED_PROXIES only");
  }
  if (p.SOCKJS_PATH !== '') {
    if (p.WS_PORT === undefined && tls?.wssPort === undefined) {
      throw new ConfigError('SOCKJS_PATH', p.SOCKJS_PATH, 'expected WS_PORT (or WSS_PORT) to be on: SockJS is served on the WebSocket listeners');
    }
    if (p.WS_PATH === p.SOCKJS_PATH || p.WS_PATH.startsWith(`${p.SOCKJS_PATH}/`)) {
      throw new ConfigError('SOCKJS_PATH', p.SOCKJS_PATH, `expected a path apart from WS_PATH (${p.WS_PATH})`);
    }
  }
  return Object.freeze({
    host: p.HOST,
    stompPort: p.STOMP_PORT,
    wsPort: p.WS_PORT,
    wsPath: p.WS_PATH,
    sockjsPath: p.SOCKJS_PATH || undefined,
    heartbeat: p.HEARTBEAT,
    heartbeatMinMs: p.HEARTBEAT_MIN_MS,
    heartbeatGrace: p.HEARTBEAT_GRACE,
    connectTimeoutMs: p.CONNECT_TIMEOUT_MS,
    frameTimeoutMs: p.FRAME_TIMEOUT_MS,
    handshakeTimeoutMs: p.HANDSHAKE_TIMEOUT_MS,
    maxConnections: p.MAX_CONNECTIONS,
    maxConnectionsPerAddress: p.MAX_CONNECTIONS_PER_ADDRESS,
    shutdownTimeoutMs: p.SHUTDOWN_TIMEOUT_MS,
    limits: { maxFrameBytes: p.MAX_FRAME_BYTES, maxHeaders: p.MAX_HEADERS, maxHeaderLineBytes: p.MAX_HEADER_LINE_BYTES },
    writeBufferLimitBytes: p.WRITE_BUFFER_LIMIT_BYTES,
    writeCoalesceMs: p.WRITE_COALESCE_MS,
    writeCoalesceMaxMs: p.WRITE_COALESCE_MAX_MS,
    slowConsumerPolicy: p.SLOW_CONSUMER_POLICY,
    flowControl: p.FLOW_CONTROL ? { behindShare: p.FLOW_CONTROL_BEHIND_SHARE, windowDeliveries: p.FLOW_CONTROL_WINDOW, stallMs: p.FLOW_CONTROL_STALL_MS, maxHoldMs: p.FLOW_CONTROL_MAX_HOLD_MS } : undefined,
    flowBehindBytes,
    relayBacklogBytes: p.RELAY_BACKLOG_BYTES,
    topicPrefix: p.TOPIC_PREFIX,
    queuePrefix: p.QUEUE_PREFIX,
    maxQueueMessages: p.MAX_QUEUE_MESSAGES,
    maxQueueBytes: p.MAX_QUEUE_BYTES,
    maxTotalQueueBytes: p.MAX_TOTAL_QUEUE_BYTES,
    maxQueues: p.MAX_QUEUES,
    maxPendingFrameBytes: p.MAX_PENDING_FRAME_BYTES,
    maxTransactionFrames: p.MAX_TRANSACTION_FRAMES,
    maxTransactionBytes: p.MAX_TRANSACTION_BYTES,
    maxSubscriptionsPerSession: p.MAX_SUBSCRIPTIONS_PER_SESSION,
    maxSubscriptionBytesPerSession: p.MAX_SUBSCRIPTION_BYTES_PER_SESSION,
    maxUnacked: p.MAX_UNACKED,
    serverName: p.SERVER_NAME,
    logLevel: p.LOG_LEVEL as LogLevel,
    authMode,
    jwt: {
      secret: p.JWT_SECRET || undefined,
      publicKeyPem: p.JWT_PUBLIC_KEY || undefined,
      jwksUrl: p.JWT_JWKS_URL || undefined,
      issuer: p.JWT_ISSUER || undefined,
      audience: p.JWT_AUDIENCE || undefined,
      clockToleranceS: p.JWT_CLOCK_TOLERANCE_S,
      userClaim: p.JWT_USER_CLAIM,
      roleClaims: p.JWT_ROLE_CLAIM,
      requireExp: p.JWT_REQUIRE_EXP,
    },
    singleSession: p.SINGLE_SESSION,
    maxSessionsPerUser: p.MAX_SESSIONS_PER_USER,
    userPrefix: p.USER_PREFIX,
    aclFile: p.ACL_FILE || undefined,
    usersFile: p.USERS_FILE || undefined,
    allowedOrigins: p.ALLOWED_ORIGINS,
    allowedHosts: p.ALLOWED_HOSTS,
    instanceId: p.INSTANCE_ID || defaultInstanceId(),
    revocationTtlSeconds: p.REVOCATION_TTL_SECONDS,
    redis:
      p.REDIS_URL === '' && p.REDIS_CLUSTER_NODES === ''
        ? undefined
        : {
            url: p.REDIS_URL || undefined,
            clusterNodes: p.REDIS_CLUSTER_NODES === '' ? undefined : list(p.REDIS_CLUSTER_NODES).map(hostPort),
            prefix: p.REDIS_PREFIX,
            sessionTtlSeconds: p.SESSION_TTL_SECONDS,
            instanceHeartbeatMs: p.INSTANCE_HEARTBEAT_MS,
          },
    // The demo's rooms are rooms whatever else is: it shows presence.
    presenceDestinations: p.DEMO && !p.PRESENCE_DESTINATIONS.includes(DEMO_ROOMS) ? [...p.PRESENCE_DESTINATIONS, DEMO_ROOMS] : p.PRESENCE_DESTINATIONS,
    presenceCompanionSuffix: p.PRESENCE_COMPANION_SUFFIX || undefined,
    http: { ...httpConfig(p, authMode === 'jwt'), isDemo: p.DEMO },
    trustedProxies: p.TRUSTED_PROXIES,
    proxyProtocol: p.PROXY_PROTOCOL,
    forwardedHeader: p.FORWARDED_HEADER,
    tls,
    backend,
    tokenRefreshDestination: p.TOKEN_REFRESH_DESTINATION,
  });
}

function backendConfig(p: Parsed): BackendConfig | undefined {
  if (p.BACKEND_URL === '') {
    if (p.BACKEND_HOOKS.length > 0) throw new ConfigError('BACKEND_HOOKS', p.BACKEND_HOOKS.join(','), 'expected BACKEND_URL to be set: the hooks call it');
    return undefined;
  }
  const hooks = new Set<HookName>(p.BACKEND_HOOKS.length > 0 ? p.BACKEND_HOOKS : ['send']);
  if (p.BACKEND_SUBSCRIBE_PATTERNS.length > 0 && !hooks.has('subscribe')) {
    throw new ConfigError('BACKEND_SUBSCRIBE_PATTERNS', p.BACKEND_SUBSCRIBE_PATTERNS.join(','), 'expected "subscribe" in BACKEND_HOOKS too: the patterns name what the subscribe hook decides');
  }
  for (const prefix of p.APP_PREFIXES) {
    for (const [variable, other] of [
      ['TOPIC_PREFIX', p.TOPIC_PREFIX],
      ['QUEUE_PREFIX', p.QUEUE_PREFIX],
      ['USER_PREFIX', p.USER_PREFIX],
      ['TOKEN_REFRESH_DESTINATION', p.TOKEN_REFRESH_DESTINATION],
    ] as const) {
      if (prefix.startsWith(other) || other.startsWith(prefix)) throw new ConfigError('APP_PREFIXES', p.APP_PREFIXES.join(','), `expected prefixes apart from ${variable} (${other})`);
    }
  }
  return {
    url: p.BACKEND_URL,
    hooks,
    appPrefixes: p.APP_PREFIXES,
    timeoutMs: p.BACKEND_TIMEOUT_MS,
    secret: p.BACKEND_SECRET || undefined,
    maxResponseBytes: p.BACKEND_MAX_RESPONSE_BYTES,
    forwardHeaders: p.BACKEND_FORWARD_HEADERS,
    subscribePatterns: p.BACKEND_SUBSCRIBE_PATTERNS,
    events: new Set(p.BACKEND_EVENTS),
    maxInFlight: p.BACKEND_MAX_IN_FLIGHT,
    connections: p.BACKEND_CONNECTIONS,
    maxPendingEvents: p.BACKEND_MAX_PENDING_EVENTS,
  };
}

/** The chat demo's rooms (DEMO=1). */
export const DEMO_ROOMS = '/topic/demo.*';

function httpConfig(p: Parsed, hasJwt: boolean): Omit<HttpConfig, 'isDemo'> {
  const adminToken = p.ADMIN_TOKEN || undefined;
  const metricsToken = p.METRICS_TOKEN || undefined;
  const host = p.HTTP_HOST || p.HOST;
  const isOpen = adminToken === undefined && !hasJwt;
  const isMetricsGuarded = p.METRICS_AUTH === 'credential' || (p.METRICS_AUTH === 'auto' && metricsToken !== undefined);
  if (isMetricsGuarded && metricsToken === undefined && isOpen) {
    throw new ConfigError('METRICS_AUTH', p.METRICS_AUTH, 'expected METRICS_TOKEN, ADMIN_TOKEN or JWT auth to be set: the credential /metrics would ask for');
  }
  // An API nobody has to authenticate to must not be reachable from elsewhere.
  return {
    port: p.HTTP_PORT,
    host: isOpen && !isLoopback(host) ? '127.0.0.1' : host,
    adminToken,
    adminRoles: p.ADMIN_ROLES,
    isOpen,
    isMetricsGuarded,
    metricsToken,
    metricsQueueSeries: p.METRICS_QUEUE_SERIES,
  };
}

function isTrustedProxyList(entries: string[]): boolean {
  try {
    new TrustedProxies(entries);
    return true;
  } catch {
    return false;
  }
}

function hostPort(node: string): { host: string; port: number } {
  const colon = node.lastIndexOf(':');
  return { host: node.slice(0, colon), port: Number(node.slice(colon + 1)) };
}

/** Host name and pid say where; the random part keeps a restarted process (same pid in a container) apart. */
function defaultInstanceId(): string {
  const host =
    os
      .hostname()
      .replace(/[^A-Za-z0-9._-]/g, '-')
      .slice(0, 60) || 'host';
  return `${host}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
