// Real JWTs for the authentication tests, minted with `jose`, and the two things a client
// can observe of a CONNECT: CONNECTED (with user-name) or ERROR with a stable code, then close.

import assert from 'node:assert/strict';
import { SignJWT } from 'jose';
import type { JWTPayload, KeyLike } from 'jose';
import type { Frame } from '../../src/codec';
import type { RunningServer } from '../../src/server';
import type { SessionInfo } from '../../src/session/events';
import { RawClient, header } from './raw-client';

/** 40 bytes: comfortably over the 32-byte minimum. */
export const SECRET = 'test-secret-0123456789-abcdefghijklmnopq';
export const OTHER_SECRET = 'another-secret-0123456789-abcdefghijklmn';

export const nowS = (): number => Math.floor(Date.now() / 1000);

export interface MintOptions {
  alg?: string;
  kid?: string;
  /** exp in epoch seconds; default now + 1 h. `null`: no exp claim. */
  exp?: number | null;
  nbf?: number;
  iss?: string;
  aud?: string | string[];
}

/** A signed JWT; `sub` is taken from claims (omit it to mint a token without one). */
export function mint(key: KeyLike | Uint8Array | string, claims: JWTPayload, options: MintOptions = {}): Promise<string> {
  const alg = options.alg ?? 'HS256';
  const jwt = new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT', ...(options.kid !== undefined ? { kid: options.kid } : {}) }).setIssuedAt();
  if (options.exp !== null) jwt.setExpirationTime(options.exp ?? nowS() + 3600);
  if (options.nbf !== undefined) jwt.setNotBefore(options.nbf);
  if (options.iss !== undefined) jwt.setIssuer(options.iss);
  if (options.aud !== undefined) jwt.setAudience(options.aud);
  return jwt.sign(typeof key === 'string' ? new TextEncoder().encode(key) : key);
}

const b64url = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');

/** An unsecured JWT built by hand: header.payload. with an empty signature. */
export function unsecuredToken(payload: JWTPayload, alg = 'none'): string {
  return `${b64url({ alg, typ: 'JWT' })}.${b64url(payload)}.`;
}

const CONNECT_BASE = { 'accept-version': '1.2', host: '/', 'heart-beat': '0,0' };

export const bearer = (token: string): Record<string, string> => ({ Authorization: `Bearer ${token}` });

/** CONNECT with these headers; it must be accepted. Returns the CONNECTED frame. */
export async function accepted(client: RawClient, headers: Record<string, string>, expectedUser?: string): Promise<Frame> {
  const connected = await client.connect(headers);
  if (expectedUser !== undefined) assert.equal(header(connected, 'user-name'), expectedUser);
  return connected;
}

/** How long a WebSocket refused at CONNECT may take to close: as long as TCP. */
export const WS_REFUSAL_CLOSE_MS = 3000;

/** CONNECT with these headers; it must be refused with `code`, and the connection closed by the broker. */
export async function refused(client: RawClient, headers: Record<string, string>, code: 'UNAUTHENTICATED' | 'TOKEN_EXPIRED', closeWithinMs = 3000): Promise<Frame> {
  client.sendFrame('CONNECT', { ...CONNECT_BASE, ...headers });
  const next = await client.next();
  assert.equal(next.command, 'ERROR', `expected ERROR ${code}, got ${next.command} ${JSON.stringify(next.headers)}`);
  const message = header(next, 'message') ?? '';
  assert.ok(message.startsWith(`${code}:`), `expected a ${code} message, got ${JSON.stringify(message)}`);
  await client.waitClosed(closeWithinMs);
  return next;
}

/** Every client a test opens, to close in `after`. */
export class ClientPool {
  private readonly clients: RawClient[] = [];

  async tcp(port: number | undefined): Promise<RawClient> {
    assert.ok(port !== undefined, 'the TCP listener is off');
    const client = await RawClient.tcp(port);
    this.clients.push(client);
    return client;
  }

  async ws(port: number | undefined, options: Parameters<typeof RawClient.ws>[1] = {}): Promise<RawClient> {
    assert.ok(port !== undefined, 'the WebSocket listener is off');
    const client = await RawClient.ws(port, options);
    this.clients.push(client);
    return client;
  }

  destroyAll(): void {
    for (const client of this.clients.splice(0)) client.destroy();
  }
}

/** The connect events a broker emits, to look up a session's roles by its CONNECTED `session` header. */
export function recordConnects(broker: RunningServer): Map<string, SessionInfo> {
  const sessions = new Map<string, SessionInfo>();
  broker.events.on('connect', (info) => sessions.set(info.sessionId, info));
  return sessions;
}

export function sessionOf(sessions: Map<string, SessionInfo>, connected: Frame): SessionInfo {
  const id = header(connected, 'session');
  assert.ok(id !== undefined, 'CONNECTED has no session header');
  const info = sessions.get(id);
  assert.ok(info !== undefined, `no connect event for session ${id}`);
  return info;
}
