// The unit per-address shares are counted in (failed API logins, password checks): one
// client. An IPv4 address is one; an IPv6 host usually holds a whole /64 (SLAAC, privacy
// addresses), so a v6 address counts by its first 64 bits — else a single machine could
// take any number of shares. IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is its IPv4 address.

import { isIP } from 'node:net';

/** `address` may be a bare address or `address:port` / `[v6]:port` (a session's remote address). */
export function addressKey(address: string): string {
  const ip = bareAddress(address);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped !== null) return mapped[1]!;
  if (isIP(ip) !== 6) return ip;
  return `${expandIpv6(ip).slice(0, 4).join(':')}::/64`;
}

function bareAddress(address: string): string {
  if (isIP(address) !== 0) return address;
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(address);
  if (bracketed !== null) return bracketed[1]!;
  const colon = address.lastIndexOf(':');
  return colon === -1 ? address : address.slice(0, colon);
}

/** The eight hextets of an IPv6 address, `::` expanded, lower case, no leading zeros. */
function expandIpv6(ip: string): string[] {
  const withoutZone = ip.split('%')[0]!.toLowerCase();
  const [head, tail] = withoutZone.includes('::') ? withoutZone.split('::') : [withoutZone, undefined];
  const headParts = head === '' ? [] : head.split(':');
  const tailParts = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = Array.from({ length: Math.max(0, 8 - headParts.length - tailParts.length) }, () => '0');
  return [...headParts, ...(tail === undefined ? [] : zeros), ...tailParts].map((part) => part.replace(/^0+(?=.)/, ''));
}
