// Which `Host` names a listener without credentials answers (DNS rebinding): a page on
// evil.example whose name is re-pointed at 127.0.0.1 reaches a loopback port from the victim's
// browser, but its requests still say `Host: evil.example`. A listener that trusts whoever
// can reach it (AUTH=none, an HTTP API without admin credential) therefore answers only Host
// names that are loopback or listed in ALLOWED_HOSTS, and browser requests only from pages
// on such hosts.

/** `localhost`, `*.localhost` (RFC 6761: browsers resolve these to loopback themselves), 127/8, ::1. */
export function isLoopbackHostname(hostname: string): boolean {
  const name = hostname.toLowerCase().replace(/\.$/, '');
  return name === 'localhost' || name.endsWith('.localhost') || name === '[::1]' || name === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

/** The host name of a `Host` header (`name:port`, `[v6]:port`), lower case; undefined if it is not one. */
export function hostnameOfHostHeader(host: string | undefined): string | undefined {
  if (host === undefined || host === '' || /[\s/?#@\\]/.test(host)) return undefined;
  try {
    return new URL(`http://${host}`).hostname.toLowerCase();
  } catch {
    return undefined;
  }
}

/** The host name of an `Origin` header (`scheme://name[:port]`); undefined for `null` or anything else. */
function hostnameOfOrigin(origin: string): string | undefined {
  try {
    const url = new URL(origin);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.hostname.toLowerCase() : undefined;
  } catch {
    return undefined;
  }
}

/** ALLOWED_ORIGINS, compared lower case without a trailing slash. */
export interface OriginList {
  /** Some origins are named (and `*` is not among them): the others are refused. */
  readonly isRestricted: boolean;
  /** Named in the list. */
  isNamed(origin: string): boolean;
  /** Named, or the list says `*`. */
  isAllowed(origin: string): boolean;
}

export function originList(allowedOrigins: readonly string[]): OriginList {
  const named = new Set(allowedOrigins.map(normalizeOrigin));
  const isAny = named.has('*');
  const isNamed = (origin: string): boolean => named.has(normalizeOrigin(origin));
  return { isRestricted: named.size > 0 && !isAny, isNamed, isAllowed: (origin) => isAny || isNamed(origin) };
}

/** How origins are compared: lower case, no trailing slash. */
function normalizeOrigin(origin: string): string {
  return origin.trim().toLowerCase().replace(/\/$/, '');
}

export interface ForeignRequest {
  /** What was not allowed: the Host name, or the page's Origin. */
  kind: 'host' | 'origin';
  /** What the 403 says: what was refused, and which setting would allow it. */
  message: string;
}

/**
 * For a listener without credentials: why a request is refused (403), or undefined to answer
 * it. Refused: a `Host` that is not a loopback name or in ALLOWED_HOSTS (`*`: any), and an
 * `Origin` (a browser page) that is neither on such a host (any port) nor allowed by `origins`.
 */
export function localOnlyGuard(allowedHosts: readonly string[], origins: OriginList): (host: string | undefined, origin: string | undefined) => ForeignRequest | undefined {
  const isAnyHost = allowedHosts.includes('*');
  const listed = new Set(allowedHosts.map((name) => hostnameOfHostHeader(name) ?? name.toLowerCase()));
  const isAllowedName = (hostname: string | undefined): boolean => hostname !== undefined && (isAnyHost || isLoopbackHostname(hostname) || listed.has(hostname));
  return (host, origin) => {
    if (!isAllowedName(hostnameOfHostHeader(host))) return { kind: 'host', message: `Host ${quoted(host ?? '')} is not a loopback name: set ALLOWED_HOSTS to answer it` };
    if (origin !== undefined && !isAllowedName(hostnameOfOrigin(origin)) && !origins.isAllowed(origin)) {
      return { kind: 'origin', message: `Origin ${quoted(origin)} is not on a loopback or allowed host: list it in ALLOWED_ORIGINS to allow it` };
    }
    return undefined;
  };
}

export function quoted(value: string): string {
  return JSON.stringify(value.slice(0, 100));
}
