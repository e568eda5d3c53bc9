// What counts as one client for per-address shares: an IPv4 address, an IPv6 /64.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressKey } from '../../src/auth/address-key';

describe('addressKey', () => {
  it('an IPv4 address, with or without its port, IPv4-mapped or not, is itself', () => {
    for (const form of ['10.0.0.7', '10.0.0.7:51544', '::ffff:10.0.0.7', '::ffff:10.0.0.7:51544']) assert.equal(addressKey(form), '10.0.0.7', form);
    assert.notEqual(addressKey('10.0.0.7'), addressKey('10.0.0.8'));
  });

  it('IPv6 addresses of one /64 are one client, whatever their spelling; another /64 is another', () => {
    const one = addressKey('2001:db8:0:1::1');
    for (const form of ['2001:db8:0:1:ffff:ffff:ffff:ffff', '[2001:0db8:0000:0001::5]:443', '2001:DB8:0:1:a:b:c:d']) assert.equal(addressKey(form), one, form);
    assert.notEqual(addressKey('2001:db8:0:2::1'), one);
    assert.equal(addressKey('[::1]:8080'), addressKey('::1'));
  });
});
