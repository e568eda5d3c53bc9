// Who the client is behind HTTP proxies: X-Forwarded-For and Forwarded believed only from
// TRUSTED_PROXIES, walked from the right so that a client cannot choose its own address.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatAddress } from '../../src/transport/client-address';
import { forwardedClientAddress } from '../../src/transport/forwarded';
import { TrustedProxies } from '../../src/transport/trusted-proxies';

const trusted = new TrustedProxies(['10.0.0.0/8', '192.0.2.1', 'fd00::/8']);
const proxy = { address: '10.1.2.3', port: 40000 };
const xff = (value: string) => ({ 'x-forwarded-for': value });

describe('TRUSTED_PROXIES', () => {
  it('matches addresses and CIDR blocks, IPv4 and IPv6, and IPv4-mapped IPv6 as IPv4', () => {
    assert.ok(trusted.has('10.200.0.1'));
    assert.ok(trusted.has('::ffff:10.200.0.1'));
    assert.ok(trusted.has('192.0.2.1'));
    assert.ok(!trusted.has('192.0.2.2'));
    assert.ok(trusted.has('fd12::1'));
    assert.ok(!trusted.has('2001:db8::1'));
    assert.ok(!trusted.has('not an address'));
    assert.ok(!new TrustedProxies([]).has('127.0.0.1'));
  });

  it('refuses entries that are not addresses or CIDR blocks, naming them', () => {
    for (const entry of ['10.0.0.0/33', 'example.com', '10.0.0/8', 'fd00::/129', '10.0.0.0/']) {
      assert.throws(() => new TrustedProxies([entry]), new RegExp(entry.replace(/[./]/g, '\\$&')));
    }
  });
});

describe('the client address behind proxies', () => {
  it('an untrusted peer is the client, whatever header it sends', () => {
    const peer = { address: '203.0.113.9', port: 5000 };
    assert.deepEqual(forwardedClientAddress(peer, xff('198.51.100.1'), 'x-forwarded-for', trusted), peer);
    assert.deepEqual(forwardedClientAddress(peer, { forwarded: 'for=198.51.100.1' }, 'forwarded', trusted), peer);
  });

  it('X-Forwarded-For from a trusted proxy: the rightmost untrusted hop, never what the client prepended', () => {
    assert.deepEqual(forwardedClientAddress(proxy, xff('198.51.100.1'), 'x-forwarded-for', trusted), { address: '198.51.100.1', port: undefined });
    // The client forged "1.1.1.1"; the proxy appended what it saw.
    assert.equal(forwardedClientAddress(proxy, xff('1.1.1.1, 198.51.100.1'), 'x-forwarded-for', trusted).address, '198.51.100.1');
    // Two trusted proxies in a row.
    assert.equal(forwardedClientAddress(proxy, xff('1.1.1.1, 198.51.100.1, 10.9.9.9'), 'x-forwarded-for', trusted).address, '198.51.100.1');
    // Repeated headers are one list.
    assert.equal(forwardedClientAddress(proxy, { 'x-forwarded-for': ['1.1.1.1', '198.51.100.2'] }, 'x-forwarded-for', trusted).address, '198.51.100.2');
    // No header: the proxy is the client (a health check).
    assert.deepEqual(forwardedClientAddress(proxy, {}, 'x-forwarded-for', trusted), proxy);
  });

  it('a hop that names no address ends the walk at the proxy that reported it', () => {
    assert.deepEqual(forwardedClientAddress(proxy, xff('198.51.100.1, garbage'), 'x-forwarded-for', trusted), proxy);
    assert.equal(forwardedClientAddress(proxy, xff('garbage, 10.5.5.5'), 'x-forwarded-for', trusted).address, '10.5.5.5');
  });

  it('Forwarded (RFC 7239): for= with quoted IPv6 and ports, other parameters ignored; only the configured header is read', () => {
    const headers = { forwarded: 'for=1.1.1.1, for="[2001:db8:cafe::17]:4711";proto=https;by=10.1.2.3', 'x-forwarded-for': '198.51.100.77' };
    assert.deepEqual(forwardedClientAddress(proxy, headers, 'forwarded', trusted), { address: '2001:db8:cafe::17', port: 4711 });
    assert.equal(forwardedClientAddress(proxy, headers, 'x-forwarded-for', trusted).address, '198.51.100.77');
    assert.deepEqual(forwardedClientAddress(proxy, { forwarded: 'for=unknown' }, 'forwarded', trusted), proxy);
    assert.equal(forwardedClientAddress(proxy, { forwarded: 'For="198.51.100.3:80"' }, 'forwarded', trusted).address, '198.51.100.3');
  });

  it('formats as logs and the session API show it', () => {
    assert.equal(formatAddress({ address: '198.51.100.1', port: 5 }), '198.51.100.1:5');
    assert.equal(formatAddress({ address: '2001:db8::1', port: 5 }), '[2001:db8::1]:5');
    assert.equal(formatAddress({ address: '198.51.100.1', port: undefined }), '198.51.100.1');
  });
});
