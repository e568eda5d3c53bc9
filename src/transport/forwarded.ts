// The client's address behind HTTP proxies (the WebSocket handshake): X-Forwarded-For or
// Forwarded (RFC 7239), believed only from a trusted proxy.
//
// Each proxy appends the address it heard from, so the list reads client, proxy 1, ...,
// and the socket's peer is the last proxy. It is walked from the right: while the hop is a
// trusted proxy, the address it reports is taken; the first untrusted one is the client.
// Whatever an untrusted peer wrote further left is never looked at, so a client cannot
// choose its own address. A hop that names no usable address ("unknown", an obfuscated
// identifier, garbage) ends the walk at the proxy that reported it.
//
// Only one header is read (FORWARDED_HEADER): a proxy that sets one passes the other on as
// the client sent it, so reading both would let a client forge its address.

import net from 'node:net';
import { plainAddress } from './client-address';
import type { ClientAddress } from './client-address';
import type { TrustedProxies } from './trusted-proxies';

export type ForwardedHeader = 'x-forwarded-for' | 'forwarded';

/** Hops looked at, from the right: a longer chain is someone's game, not a proxy setup. */
const MAX_HOPS = 32;

/**
 * The client's address for a request whose socket peer is `peer`: the peer itself unless
 * it is a trusted proxy, else what the proxies' header says (see the file header).
 */
export function forwardedClientAddress(peer: ClientAddress, headers: Readonly<Record<string, string | string[] | undefined>>, header: ForwardedHeader, trusted: TrustedProxies): ClientAddress {
  if (!trusted.has(peer.address)) return peer;
  const raw = headers[header];
  const value = Array.isArray(raw) ? raw.join(',') : raw;
  if (value === undefined || value === '') return peer;
  const hops = (header === 'forwarded' ? forwardedFor(value) : value.split(',')).slice(-MAX_HOPS);
  let client = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = parseHop(hops[i]!);
    if (hop === undefined) return client;
    client = hop;
    if (!trusted.has(hop.address)) return hop;
  }
  return client;
}

/** The `for=` value of each element of a Forwarded header, in order ('' where an element has none). */
function forwardedFor(value: string): string[] {
  return splitOutsideQuotes(value, ',').map((element) => {
    for (const pair of splitOutsideQuotes(element, ';')) {
      const eq = pair.indexOf('=');
      if (eq !== -1 && pair.slice(0, eq).trim().toLowerCase() === 'for')
        return pair
          .slice(eq + 1)
          .trim()
          .replace(/^"(.*)"$/, '$1');
    }
    return '';
  });
}

function splitOutsideQuotes(value: string, separator: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let isQuoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (c === '"') isQuoted = !isQuoted;
    else if (c === '\\' && isQuoted) i++;
    else if (c === separator && !isQuoted) {
      parts.push(value.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(value.slice(start));
  return parts;
}

/** "203.0.113.7", "203.0.113.7:4711", "2001:db8::1", "[2001:db8::1]:4711" → address and port. */
function parseHop(text: string): ClientAddress | undefined {
  const hop = text.trim();
  let address = hop;
  let port: number | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(hop);
  const withPort = /^([^:]+):(\d{1,5})$/.exec(hop);
  if (bracketed !== null) {
    address = bracketed[1]!;
    port = bracketed[2] === undefined ? undefined : Number(bracketed[2]);
  } else if (withPort !== null) {
    address = withPort[1]!;
    port = Number(withPort[2]);
  }
  address = plainAddress(address);
  if (net.isIP(address) === 0 || (port !== undefined && port > 65535)) return undefined;
  return { address, port };
}
