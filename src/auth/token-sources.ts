// Where a client's token comes from, in this order (the first one present is used):
// 1. CONNECT header `Authorization: Bearer <jwt>` (also `authorization`)
// 2. CONNECT header `passcode`
// 3. the WebSocket URL's query parameter `access_token`
// 4. the `access_token` cookie of the WebSocket handshake
// Browsers cannot set headers on a WebSocket handshake, hence 3 and 4. The cookie is an
// ambient credential (the browser attaches it whichever page opens the socket): the handshake
// check (origin.ts) lets it through only from an allowed Origin.

import { headerValue } from '../codec';
import type { Frame } from '../codec';
import type { PeerInfo } from '../transport/connection';

export type TokenSource = 'authorization-header' | 'passcode' | 'query' | 'cookie';

export interface FoundToken {
  token: string;
  source: TokenSource;
}

const BEARER = /^Bearer\s+(\S+)\s*$/i;
const TOKEN_COOKIE = 'access_token';

/** Whether a handshake's Cookie header carries a token (what findToken would take). */
export function hasTokenCookie(header: string | string[] | undefined): boolean {
  return Boolean(cookieValue(header, TOKEN_COOKIE));
}

export function findToken(frame: Frame, peer: PeerInfo): FoundToken | undefined {
  const authorization = headerValue(frame.headers, 'Authorization') ?? headerValue(frame.headers, 'authorization');
  const bearer = authorization === undefined ? undefined : BEARER.exec(authorization)?.[1];
  if (bearer !== undefined) return { token: bearer, source: 'authorization-header' };
  const passcode = headerValue(frame.headers, 'passcode');
  if (passcode !== undefined && passcode !== '') return { token: passcode, source: 'passcode' };
  if (peer.url !== undefined) {
    const query = new URL(peer.url, 'http://localhost').searchParams.get('access_token');
    if (query) return { token: query, source: 'query' };
  }
  const cookie = cookieValue(peer.headers?.['cookie'], TOKEN_COOKIE);
  if (cookie) return { token: cookie, source: 'cookie' };
  return undefined;
}

function cookieValue(header: string | string[] | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const line of Array.isArray(header) ? header : [header]) {
    for (const pair of line.split(';')) {
      const eq = pair.indexOf('=');
      if (eq !== -1 && pair.slice(0, eq).trim() === name) {
        const raw = pair
          .slice(eq + 1)
          .trim()
          .replace(/^"(.*)"$/, '$1');
        try {
          return decodeURIComponent(raw);
        } catch {
          return raw;
        }
      }
    }
  }
  return undefined;
}
