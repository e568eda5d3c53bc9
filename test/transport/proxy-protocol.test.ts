// The PROXY protocol header reader, alone: v1 and v2 as nginx, HAProxy and AWS NLB send
// them, fed whole and a byte at a time; what follows the header is handed back untouched;
// malformed or oversized headers are refused without holding more than the bound.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProxyHeaderReader, V1_MAX_BYTES, V2_MAX_BYTES } from '../../src/transport/proxy-protocol';
import type { ProxyHeader } from '../../src/transport/proxy-protocol';

const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const STOMP = Buffer.from('CONNECT\naccept-version:1.2\n\n\0');

function v2(command: number, family: number, body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head[0] = 0x20 | command;
  head[1] = (family << 4) | 1;
  head.writeUInt16BE(body.length, 2);
  return Buffer.concat([SIGNATURE, head, body]);
}

function ipv4Body(source: number[], sourcePort: number, tlvBytes = 0): Buffer {
  const body = Buffer.alloc(12 + tlvBytes);
  Buffer.from(source).copy(body, 0);
  Buffer.from([10, 0, 0, 1]).copy(body, 4);
  body.writeUInt16BE(sourcePort, 8);
  body.writeUInt16BE(61613, 10);
  return body;
}

function readAll(bytes: Buffer): ProxyHeader | undefined {
  return new ProxyHeaderReader().push(bytes);
}

function readByteByByte(bytes: Buffer): ProxyHeader | undefined {
  const reader = new ProxyHeaderReader();
  for (let i = 0; i < bytes.length; i++) {
    const result = reader.push(bytes.subarray(i, i + 1));
    if (result !== undefined) return result;
  }
  return undefined;
}

describe('PROXY protocol v1', () => {
  it('TCP4: the source address and port, and the STOMP bytes after the line untouched', () => {
    for (const read of [readAll, readByteByByte]) {
      const result = read(Buffer.concat([Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51544 61613\r\n'), STOMP]));
      assert.equal(result?.kind, 'proxied');
      if (result?.kind !== 'proxied') return;
      assert.deepEqual(result.source, { address: '203.0.113.7', port: 51544 });
      // Byte by byte, the header ends exactly at the last byte fed.
      if (read === readAll) assert.deepEqual(result.rest, STOMP);
    }
  });

  it('TCP6 and UNKNOWN (the proxy speaking for itself)', () => {
    const six = readAll(Buffer.from('PROXY TCP6 2001:db8::7 2001:db8::1 40000 61613\r\n'));
    assert.deepEqual(six?.kind === 'proxied' && six.source, { address: '2001:db8::7', port: 40000 });
    assert.equal(readAll(Buffer.from('PROXY UNKNOWN\r\n'))?.kind, 'local');
  });

  it('refuses malformed lines, and a line past 107 bytes without waiting for its end', () => {
    for (const line of ['PROXY TCP4 203.0.113.999 10.0.0.1 1 2\r\n', 'PROXY TCP4 203.0.113.7 10.0.0.1 70000 2\r\n', 'PROXY TCP5 a b 1 2\r\n', 'PROXY TCP4 1.2.3.4\r\n', 'PROXY TCP6 nothex 2001:db8::1 1 2\r\n']) {
      assert.equal(readAll(Buffer.from(line))?.kind, 'invalid', line);
    }
    const endless = Buffer.from(`PROXY TCP4 ${'1'.repeat(V1_MAX_BYTES)}`);
    assert.equal(readByteByByte(endless)?.kind, 'invalid');
  });

  it('refuses bytes that are no PROXY header at all (a client speaking STOMP straight away)', () => {
    assert.equal(readAll(STOMP)?.kind, 'invalid');
    assert.equal(readAll(Buffer.from('\r\n\r\nCONNECT\n\n\0'))?.kind, 'invalid');
    assert.equal(readAll(Buffer.from('PROXX TCP4'))?.kind, 'invalid');
  });
});

describe('PROXY protocol v2', () => {
  it('IPv4 with TLVs after the addresses: the source, and the bytes after the header', () => {
    for (const read of [readAll, readByteByByte]) {
      const header = v2(1, 1, ipv4Body([198, 51, 100, 9], 4242, 20));
      const result = read(read === readAll ? Buffer.concat([header, STOMP]) : header);
      assert.equal(result?.kind, 'proxied');
      if (result?.kind !== 'proxied') return;
      assert.deepEqual(result.source, { address: '198.51.100.9', port: 4242 });
      if (read === readAll) assert.deepEqual(result.rest, STOMP);
    }
  });

  it('IPv6, IPv4-mapped IPv6, LOCAL and AF_UNSPEC', () => {
    const body = Buffer.alloc(36);
    Buffer.from('20010db8000000000000000000000007', 'hex').copy(body, 0);
    body.writeUInt16BE(5555, 32);
    const six = readAll(v2(1, 2, body));
    assert.deepEqual(six?.kind === 'proxied' && six.source, { address: '2001:db8::7', port: 5555 });
    const mapped = Buffer.alloc(36);
    Buffer.from('00000000000000000000ffffcb007107', 'hex').copy(mapped, 0);
    const m = readAll(v2(1, 2, mapped));
    assert.deepEqual(m?.kind === 'proxied' && m.source.address, '::ffff:203.0.113.7');
    assert.equal(readAll(v2(0, 1, ipv4Body([1, 2, 3, 4], 1)))?.kind, 'local');
    assert.equal(readAll(v2(1, 0, Buffer.alloc(0)))?.kind, 'local');
  });

  it('refuses a wrong version, an unknown command, a short address block and an oversized header', () => {
    const wrongVersion = v2(1, 1, ipv4Body([1, 2, 3, 4], 1));
    wrongVersion[12] = 0x11;
    assert.equal(readAll(wrongVersion)?.kind, 'invalid');
    const badCommand = v2(1, 1, ipv4Body([1, 2, 3, 4], 1));
    badCommand[12] = 0x2f;
    assert.equal(readAll(badCommand)?.kind, 'invalid');
    assert.equal(readAll(v2(1, 1, Buffer.alloc(4)))?.kind, 'invalid');
    // Decided from the 16 fixed bytes: the announced length is never waited for.
    const huge = v2(1, 1, Buffer.alloc(0));
    huge.writeUInt16BE(V2_MAX_BYTES, 14);
    assert.equal(readAll(huge)?.kind, 'invalid');
  });
});
