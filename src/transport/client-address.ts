// Who a connection's client is, as logs, the session API and the per-address cap show it:
// an IP address and, when known, a port. The socket's own peer unless a trusted proxy named
// another (proxy-protocol.ts on TCP, forwarded.ts on the WebSocket handshake).

import net from 'node:net';

export interface ClientAddress {
  address: string;
  /** Known from the socket, a PROXY header, or a Forwarded header with a port. */
  port: number | undefined;
}

/** "::ffff:10.0.0.1" (what a dual-stack listener reports for an IPv4 peer) → "10.0.0.1"; anything else unchanged. */
export function plainAddress(address: string): string {
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : address;
}

/** The socket's own peer. */
export function socketPeer(socket: net.Socket): ClientAddress {
  return { address: plainAddress(socket.remoteAddress ?? '?'), port: socket.remotePort };
}

/** "10.0.0.7:51544", "[2001:db8::1]:51544", or the address alone when no port is known. */
export function formatAddress(client: ClientAddress): string {
  if (client.port === undefined) return client.address;
  return net.isIPv6(client.address) ? `[${client.address}]:${client.port}` : `${client.address}:${client.port}`;
}
