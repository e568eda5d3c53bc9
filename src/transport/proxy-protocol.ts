// PROXY protocol v1 (text) and v2 (binary) header reader (haproxy's proxy-protocol.txt):
// what a TCP load balancer (nginx `proxy_protocol on;`, HAProxy `send-proxy`, AWS NLB) sends
// before the client's bytes, naming the client's address. Our own code, bounded: at most
// V1_MAX_BYTES or V2_MAX_BYTES are held before the header is decided; the bytes after it
// belong to the STOMP decoder (or the TLS handshake) and are handed back untouched.
//
// Only the source address is used. LOCAL (v2) and UNKNOWN (v1) say "no client: the proxy
// itself" (health checks); the peer's own address stands then. TLVs are skipped.

import type { ClientAddress } from './client-address';

/** v1: "PROXY TCP6 <39> <39> <5> <5>\r\n" is the longest, 107 bytes (spec §2.1). */
export const V1_MAX_BYTES = 107;
/** v2: 16 fixed bytes and the length they announce; TLVs beyond a few KiB are not a proxy's. */
export const V2_MAX_BYTES = 16 + 4096;

const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

export type ProxyHeader =
  /** The client's address as the proxy saw it. */
  | { kind: 'proxied'; source: ClientAddress; rest: Buffer }
  /** A header that names no client (LOCAL, UNKNOWN, a non-IP family): the peer is the client. */
  | { kind: 'local'; rest: Buffer }
  | { kind: 'invalid'; reason: string };

/** Feed it what the socket reads until it returns a decision (undefined: more bytes needed). */
export class ProxyHeaderReader {
  private held: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): ProxyHeader | undefined {
    this.held = this.held.length === 0 ? chunk : Buffer.concat([this.held, chunk]);
    const bytes = this.held;
    if (bytes[0] === V1_PREFIX[0]) return readV1(bytes);
    if (bytes[0] === V2_SIGNATURE[0]) return readV2(bytes);
    return { kind: 'invalid', reason: 'no PROXY protocol header' };
  }
}

function startsWithPartly(bytes: Buffer, prefix: Buffer): boolean {
  const n = Math.min(bytes.length, prefix.length);
  return bytes.subarray(0, n).equals(prefix.subarray(0, n));
}

function readV1(bytes: Buffer): ProxyHeader | undefined {
  if (!startsWithPartly(bytes, V1_PREFIX)) return { kind: 'invalid', reason: 'no PROXY protocol header' };
  const end = bytes.indexOf('\r\n', 0, 'latin1');
  if (end === -1) return bytes.length >= V1_MAX_BYTES ? { kind: 'invalid', reason: `PROXY v1 line longer than ${V1_MAX_BYTES} bytes` } : undefined;
  if (end + 2 > V1_MAX_BYTES) return { kind: 'invalid', reason: `PROXY v1 line longer than ${V1_MAX_BYTES} bytes` };
  const rest = bytes.subarray(end + 2);
  const fields = bytes.toString('latin1', 0, end).split(' ');
  if (fields[1] === 'UNKNOWN') return { kind: 'local', rest };
  if (fields.length !== 6 || (fields[1] !== 'TCP4' && fields[1] !== 'TCP6')) return { kind: 'invalid', reason: 'malformed PROXY v1 line' };
  const [, family, source, , sourcePort, destinationPort] = fields as [string, string, string, string, string, string];
  const isAddress = family === 'TCP4' ? /^\d{1,3}(\.\d{1,3}){3}$/.test(source) && source.split('.').every((o) => Number(o) <= 255) : isIPv6Text(source);
  if (!isAddress || !isPort(sourcePort) || !isPort(destinationPort)) return { kind: 'invalid', reason: 'malformed PROXY v1 line' };
  return { kind: 'proxied', source: { address: source, port: Number(sourcePort) }, rest };
}

function isPort(text: string): boolean {
  return /^(0|[1-9]\d{0,4})$/.test(text) && Number(text) <= 65535;
}

function isIPv6Text(text: string): boolean {
  return /^[0-9a-fA-F:.]{2,45}$/.test(text) && text.includes(':');
}

function readV2(bytes: Buffer): ProxyHeader | undefined {
  if (!startsWithPartly(bytes, V2_SIGNATURE)) return { kind: 'invalid', reason: 'no PROXY protocol header' };
  if (bytes.length < 16) return undefined;
  const versionCommand = bytes[12]!;
  if (versionCommand >> 4 !== 2) return { kind: 'invalid', reason: `PROXY v2 header with version ${versionCommand >> 4}` };
  const command = versionCommand & 0x0f;
  if (command > 1) return { kind: 'invalid', reason: `PROXY v2 header with unknown command ${command}` };
  const length = bytes.readUInt16BE(14);
  if (16 + length > V2_MAX_BYTES) return { kind: 'invalid', reason: `PROXY v2 header of ${16 + length} bytes (at most ${V2_MAX_BYTES})` };
  if (bytes.length < 16 + length) return undefined;
  const rest = bytes.subarray(16 + length);
  const family = bytes[13]! >> 4;
  const body = bytes.subarray(16, 16 + length);
  // LOCAL: the proxy speaks for itself; the address block, if any, is to be ignored (spec §2.2).
  if (command === 0) return { kind: 'local', rest };
  if (family === 1) {
    if (length < 12) return { kind: 'invalid', reason: 'PROXY v2 IPv4 address block too short' };
    return { kind: 'proxied', source: { address: [...body.subarray(0, 4)].join('.'), port: body.readUInt16BE(8) }, rest };
  }
  if (family === 2) {
    if (length < 36) return { kind: 'invalid', reason: 'PROXY v2 IPv6 address block too short' };
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(i).toString(16));
    return { kind: 'proxied', source: { address: compressIPv6(groups), port: body.readUInt16BE(32) }, rest };
  }
  // AF_UNSPEC or AF_UNIX: no IP address to take.
  return { kind: 'local', rest };
}

/** Eight hex groups → the usual short text ("2001:db8::1"; "::ffff:1.2.3.4" for an IPv4-mapped address). */
function compressIPv6(groups: string[]): string {
  if (groups.slice(0, 5).every((g) => g === '0') && groups[5] === 'ffff') {
    const [hi, lo] = [parseInt(groups[6]!, 16), parseInt(groups[7]!, 16)];
    return `::ffff:${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  }
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLength && j - i > 1) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestStart === -1) return groups.join(':');
  return `${groups.slice(0, bestStart).join(':')}::${groups.slice(bestStart + bestLength).join(':')}`;
}
