// What a WebSocket handshake must show before any STOMP frame, judged on the HTTP upgrade
// (a refusal is HTTP 403 with the reason as its body). Browsers open a WebSocket from any
// page and attach the broker's cookies to it, so:
//
// - ALLOWED_ORIGINS set: an `Origin` not listed is refused (`*`: any origin).
// - A cookie credential (the `access_token` cookie, AUTH=jwt; any cookie when the backend's
//   CONNECT hook sees them) is ambient: the browser sends
//   it whichever page opens the socket. It is accepted only from the handshake's own origin
//   (Origin host and port = Host) or an origin listed by name in ALLOWED_ORIGINS (`*` does not
//   count, `null` never does); any other Origin with that cookie is refused (cross-site
//   WebSocket hijacking). So is the handshake's `Authorization` header when the CONNECT hook
//   sees it: a page cannot set it on a WebSocket, the browser adds the HTTP authentication it
//   has cached for the site (Basic, Digest, Negotiate), which is just as ambient. Explicit
//   credentials (CONNECT headers, the URL's access_token) are not ambient and go on to CONNECT.
// - AUTH=none: reaching the port is the credential. Only loopback or ALLOWED_HOSTS `Host`
//   names (DNS rebinding), and browser pages on such hosts or listed in ALLOWED_ORIGINS.
// A handshake without `Origin` is not from a browser (browsers always send it) and is not
// cross-site.

import type { IncomingMessage } from 'node:http';
import { hostnameOfHostHeader, localOnlyGuard, originList, quoted } from './host';
import { hasTokenCookie } from './token-sources';

export interface HandshakeRules {
  /** ALLOWED_ORIGINS; empty: any (but see the cookie rule). */
  allowedOrigins: readonly string[];
  /** ALLOWED_HOSTS: besides loopback names, the Host names an unauthenticated listener answers. */
  allowedHosts: readonly string[];
  /** AUTH=none: nobody proves anything at CONNECT. */
  isUnauthenticated: boolean;
  /** The `access_token` cookie is read as a token at CONNECT (AUTH=jwt). */
  isCookieCredential: boolean;
  /** Every cookie may be a credential: the backend's CONNECT hook sees them (BACKEND_FORWARD_HEADERS has cookie). */
  areCookiesCredentials?: boolean;
  /** The handshake's Authorization header may be a credential: the backend's CONNECT hook sees it (BACKEND_FORWARD_HEADERS has authorization). */
  isAuthorizationCredential?: boolean;
}

export type HandshakeRefusalKind = 'origin' | 'host' | 'cookie' | 'authorization';

export interface HandshakeRefusal {
  kind: HandshakeRefusalKind;
  /** The 403's body: what was refused and which setting would allow it. */
  message: string;
}

/** The handshake check for these rules; undefined when there is nothing to check. */
export function handshakeChecker(rules: HandshakeRules): ((request: IncomingMessage) => HandshakeRefusal | undefined) | undefined {
  const origins = originList(rules.allowedOrigins);
  if (!origins.isRestricted && !rules.isUnauthenticated && !rules.isCookieCredential && rules.areCookiesCredentials !== true && rules.isAuthorizationCredential !== true) return undefined;
  const localOnly = rules.isUnauthenticated ? localOnlyGuard(rules.allowedHosts, origins) : undefined;
  return (request) => {
    const origin = headerOf(request, 'origin');
    const host = headerOf(request, 'host');
    if (origins.isRestricted && origin !== undefined && !origins.isNamed(origin)) {
      return { kind: 'origin', message: `Origin ${quoted(origin)} is not in ALLOWED_ORIGINS` };
    }
    const foreign = localOnly?.(host, origin);
    if (foreign !== undefined) return foreign;
    const cookie = request.headers.cookie;
    const hasCredentialCookie = (rules.isCookieCredential && hasTokenCookie(cookie)) || (rules.areCookiesCredentials === true && cookie !== undefined && cookie !== '');
    const hasAuthorization = rules.isAuthorizationCredential === true && request.headers.authorization !== undefined && request.headers.authorization !== '';
    if (origin !== undefined && (hasCredentialCookie || hasAuthorization) && (origin === 'null' || !(isSameOrigin(origin, host) || origins.isNamed(origin)))) {
      const what = hasCredentialCookie ? 'a cookie credential' : "the browser's HTTP authorization";
      return { kind: hasCredentialCookie ? 'cookie' : 'authorization', message: `${what} is accepted from this server's own origin or from ALLOWED_ORIGINS, not from Origin ${quoted(origin)}` };
    }
    return undefined;
  };
}

/**
 * Whether the page's origin is the one the handshake was addressed to: the same host name, and
 * the same port when the Host header names one. A Host without a port is either the scheme's
 * default or a proxy's rewrite (nginx's `$host` drops the port): the host name decides then,
 * which gives nothing away, as a host's cookies are shared by all its ports.
 */
export function isSameOrigin(origin: string, host: string | undefined): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return false;
  const hostname = hostnameOfHostHeader(host);
  if (hostname === undefined || hostname !== url.hostname.toLowerCase()) return false;
  const hostPort = /:(\d+)$/.exec(host!.replace(/^\[[^\]]*\]/, ''))?.[1];
  if (hostPort === undefined) return true;
  return Number(hostPort) === Number(url.port || (url.protocol === 'https:' ? 443 : 80));
}

function headerOf(request: IncomingMessage, name: 'origin' | 'host'): string | undefined {
  const value = request.headers[name];
  return typeof value === 'string' ? value : undefined;
}
