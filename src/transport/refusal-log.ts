// The log lines of connections refused before they became sessions: over the connection
// caps, closed at the TLS or PROXY-protocol stage, or a WebSocket handshake refused for its
// Origin, Host or cookies. A flood of refusals must not flood the log: each kind logs at info
// at most one line a second, counting the refusals since its previous line.

import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import type { HandshakeRefusal, HandshakeRefusalKind } from '../auth/origin';
import type { Refusal } from './admission';
import type { TransportKind } from './connection';
import type { RejectReason } from './tcp';

/**
 * Refusals are logged at info, at most one line a second per kind (a flood of them must not
 * flood the log): each line counts the refusals since the previous one.
 */
export function rateLimitedInfo(logger: Logger, message: string): (fields: Record<string, unknown>) => void {
  let lastLineAt = 0;
  let unlogged = 0;
  return (fields) => {
    const now = Date.now();
    if (now - lastLineAt < 1000) {
      unlogged++;
      return;
    }
    logger.info({ ...fields, refusedSinceLastLine: unlogged }, message);
    lastLineAt = now;
    unlogged = 0;
  };
}

const REJECTION_MESSAGES: Record<RejectReason['code'], string> = {
  TLS_ON_PLAIN_PORT: 'connection closed: a TLS handshake arrived on a plain port',
  UNTRUSTED_PROXY_HEADER: 'connection closed: a PROXY protocol header from a peer not in TRUSTED_PROXIES',
  BAD_PROXY_HEADER: 'connection closed: no valid PROXY protocol header from a trusted proxy',
  TLS_HANDSHAKE_FAILED: 'connection closed: TLS handshake failed',
};

/** Connections closed before they became sessions (TLS on a plain port, PROXY headers): one line each kind, at most a second. */
export function rejectionLog(logger: Logger): (remoteAddress: string, reason: RejectReason) => void {
  const logs = new Map<string, (fields: Record<string, unknown>) => void>();
  return (remoteAddress, reason) => {
    let log = logs.get(reason.code);
    if (log === undefined) {
      log = rateLimitedInfo(logger, REJECTION_MESSAGES[reason.code]);
      logs.set(reason.code, log);
    }
    log({ code: reason.code, remoteAddress, detail: reason.detail });
  };
}

export function refusalLog(logger: Logger): (transport: TransportKind, remoteAddress: string, refusal: Refusal) => void {
  const log = rateLimitedInfo(logger, 'connection refused: too many connections');
  return (transport, remoteAddress, refusal) => log({ transport, remoteAddress, limit: refusal.limit, max: refusal.max });
}

const HANDSHAKE_REFUSAL_LINES: Record<HandshakeRefusalKind, string> = {
  origin: 'connection refused: Origin not allowed',
  host: 'connection refused: Host not allowed',
  cookie: 'connection refused: cookie credential from a foreign Origin',
  authorization: 'connection refused: HTTP authorization from a foreign Origin',
};

/** The handshake check, with its refusals logged (rate-limited per kind): HTTP 403 says nothing to the operator. */
export function loggedHandshakeCheck(
  verify: (request: IncomingMessage) => HandshakeRefusal | undefined,
  logger: Logger,
  clientAddress: (request: IncomingMessage) => string,
): (request: IncomingMessage) => string | undefined {
  const logs = new Map<HandshakeRefusalKind, (fields: Record<string, unknown>) => void>();
  return (request) => {
    const refusal = verify(request);
    if (refusal === undefined) return undefined;
    let log = logs.get(refusal.kind);
    if (log === undefined) logs.set(refusal.kind, (log = rateLimitedInfo(logger, HANDSHAKE_REFUSAL_LINES[refusal.kind])));
    log({
      transport: 'ws',
      remoteAddress: clientAddress(request),
      origin: String(request.headers.origin ?? '').slice(0, 200),
      host: String(request.headers.host ?? '').slice(0, 200),
    });
    return refusal.message;
  };
}
