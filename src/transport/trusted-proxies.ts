// TRUSTED_PROXIES: the peers whose word about the client's address is taken (a PROXY
// protocol header, X-Forwarded-For / Forwarded). Anyone else is the client itself, whatever
// it sends. Entries are addresses or CIDR blocks, IPv4 or IPv6; an IPv4-mapped IPv6 address
// (what a dual-stack listener reports for an IPv4 peer, "::ffff:10.0.0.1") is matched as
// the IPv4 address it is.

import net from 'node:net';
import { plainAddress } from './client-address';

export class TrustedProxies {
  readonly entries: readonly string[];
  private readonly blocks = new net.BlockList();

  /** Throws an Error naming the first entry that is not an address or a CIDR block. */
  constructor(entries: readonly string[]) {
    this.entries = entries;
    for (const entry of entries) {
      const slash = entry.indexOf('/');
      const address = plainAddress(slash === -1 ? entry : entry.slice(0, slash));
      const family = net.isIP(address);
      if (family === 0) throw new Error(`${JSON.stringify(entry)} is not an IP address or CIDR block`);
      const type = family === 4 ? 'ipv4' : 'ipv6';
      if (slash === -1) {
        this.blocks.addAddress(address, type);
        continue;
      }
      const bits = entry.slice(slash + 1);
      const maxBits = family === 4 ? 32 : 128;
      if (!/^\d{1,3}$/.test(bits) || Number(bits) > maxBits) throw new Error(`${JSON.stringify(entry)}: the prefix length must be 0 to ${maxBits}`);
      this.blocks.addSubnet(address, Number(bits), type);
    }
  }

  get isEmpty(): boolean {
    return this.entries.length === 0;
  }

  /** Whether `address` (as a socket reports it) is one of the trusted proxies. */
  has(address: string | undefined): boolean {
    if (address === undefined || this.entries.length === 0) return false;
    const plain = plainAddress(address);
    const family = net.isIP(plain);
    if (family === 0) return false;
    return this.blocks.check(plain, family === 4 ? 'ipv4' : 'ipv6');
  }
}
