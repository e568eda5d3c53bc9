// The WebSocket Origin check (ALLOWED_ORIGINS): browsers can be made to open a WebSocket
// from any page, so a configured allow-list refuses other origins with 403 during the
// handshake, before any STOMP frame. Requests without Origin (non-browser clients such as
// Node or native apps) are not cross-site and pass.

import type { IncomingMessage } from 'node:http';

export function originChecker(allowedOrigins: readonly string[]): ((request: IncomingMessage) => boolean) | undefined {
  if (allowedOrigins.length === 0 || allowedOrigins.includes('*')) return undefined;
  const allowed = new Set(allowedOrigins.map((origin) => origin.toLowerCase().replace(/\/$/, '')));
  return (request) => {
    const origin = request.headers.origin;
    return origin === undefined || allowed.has(origin.toLowerCase());
  };
}
