// Control messages between instances, validated like client input: what this code builds is
// read back unchanged (also the kick a Lua script finishes from a prefix), and anything with
// a field wrong, of the wrong type, out of bounds or too large is dropped whole.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_CONTROL_BYTES, controlCode, decodeControl, encodeControl, kickCommandPrefix, parseControl } from '../../src/cluster/control';
import type { ControlMessage } from '../../src/cluster/control';

describe('control messages', () => {
  it('reads back what it builds, with and without an origin', () => {
    const messages: ControlMessage[] = [
      { type: 'kick', sessionId: 's-1', code: 'KICKED', message: 'closed by an administrator' },
      { type: 'kick', sessionId: 's/2 "quoted"', code: 'SESSION_REPLACED', message: 'replaced' },
      { type: 'kick-user', userId: 'alice', code: 'LOGGED_OUT', message: 'logged out', revokedAt: 1_700_000_000_000 },
      { type: 'kick-user', userId: 'bob', code: 'UNAVAILABLE', message: 'gone' },
    ];
    for (const message of messages) {
      assert.deepEqual(decodeControl(encodeControl(message)), message);
      assert.deepEqual(decodeControl(Buffer.from(encodeControl(message, 'instance-a'))), { ...message, origin: 'instance-a' });
    }
  });

  it("a kick prefix finished with a JSON session id (as Lua's cjson writes it) is the kick", () => {
    const prefix = kickCommandPrefix('SESSION_REPLACED', 'replaced by a newer session of the same user');
    for (const sessionId of ['abc', 'a/b', 'quote"d', 'é€😀']) {
      // cjson escapes '/' as '\/': still the same string to JSON.parse.
      const finished = `${prefix}${JSON.stringify(sessionId).replaceAll('/', '\\/')}}`;
      assert.deepEqual(decodeControl(finished), { type: 'kick', sessionId, code: 'SESSION_REPLACED', message: 'replaced by a newer session of the same user' });
    }
  });

  it('maps any other ERROR code to KICKED', () => {
    assert.equal(controlCode('LOGGED_OUT'), 'LOGGED_OUT');
    assert.equal(controlCode('FORBIDDEN'), 'KICKED');
  });

  it('drops anything with a field missing, of the wrong type, out of bounds, or too large', () => {
    const kick = { type: 'kick', sessionId: 's', code: 'KICKED', message: 'm' };
    const kickUser = { type: 'kick-user', userId: 'u', code: 'KICKED', message: 'm' };
    assert.ok(parseControl(kick));
    assert.ok(parseControl(kickUser));
    const refused: unknown[] = [
      null,
      42,
      'kick',
      [],
      { ...kick, type: 'explode' },
      { ...kick, code: 'INTERNAL_ERROR' },
      { ...kick, message: '' },
      { ...kick, message: 'x'.repeat(513) },
      { ...kick, sessionId: undefined },
      { ...kick, sessionId: 7 },
      { ...kick, sessionId: 'x'.repeat(1025) },
      { ...kick, origin: 12 },
      { ...kick, origin: '' },
      { ...kickUser, userId: '' },
      { ...kickUser, revokedAt: 'yesterday' },
      { ...kickUser, revokedAt: Number.NaN },
      { ...kickUser, revokedAt: -1 },
      { ...kickUser, revokedAt: Infinity },
    ];
    for (const value of refused) assert.equal(parseControl(value), undefined, JSON.stringify(value));
    assert.equal(decodeControl('{not json'), undefined);
    assert.equal(decodeControl(JSON.stringify({ ...kick, padding: 'x'.repeat(MAX_CONTROL_BYTES) })), undefined, 'too large to be a command');
  });
});
