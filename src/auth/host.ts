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
export function hostnameOfOrigin(origin: string): string | undefined {
  try {
    const url = new URL(origin);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.hostname.toLowerCase() : undefined;
  } catch {
    return undefined;
  }
}

export interface HostRule {
  /** Whether a request with this `Host` header may be answered. */
  isAllowedHost(host: string | undefined): boolean;
  /** Whether a page of this `Origin` is on an allowed host (any port). */
  isOriginOnAllowedHost(origin: string): boolean;
}

/** Loopback names, plus ALLOWED_HOSTS (host names, any port; `*`: every name). */
export function hostRule(allowedHosts: readonly string[]): HostRule {
  const isAny = allowedHosts.includes('*');
  const listed = new Set(allowedHosts.map((name) => hostnameOfHostHeader(name) ?? name.toLowerCase()));
  const isAllowedName = (hostname: string | undefined): boolean => hostname !== undefined && (isAny || isLoopbackHostname(hostname) || listed.has(hostname));
  return {
    isAllowedHost: (host) => isAllowedName(hostnameOfHostHeader(host)),
    isOriginOnAllowedHost: (origin) => isAllowedName(hostnameOfOrigin(origin)),
  };
}

/**
 * Why a request to a listener without credentials is refused (403), or undefined to answer
 * it: a `Host` that is not loopback or listed, or an `Origin` (a browser page) on another host
 * and not in ALLOWED_ORIGINS.
 */
export function foreignRequestRefusal(rule: HostRule, isListedOrigin: (origin: string) => boolean, host: string | undefined, origin: string | undefined): string | undefined {
  if (!rule.isAllowedHost(host)) return `Host ${JSON.stringify(String(host ?? '').slice(0, 100))} is not a loopback name: set ALLOWED_HOSTS to answer it`;
  if (origin !== undefined && !rule.isOriginOnAllowedHost(origin) && !isListedOrigin(origin)) {
    return `Origin ${JSON.stringify(origin.slice(0, 100))} is not on a loopback or allowed host: list it in ALLOWED_ORIGINS to allow it`;
  }
  return undefined;
}

/** How origins are compared: lower case, no trailing slash. */
export function normalizeOrigin(origin: string): string {
  return origin.trim().toLowerCase().replace(/\/$/, '');
}
