import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryRegistry } from '../../src/registry/memory-registry';
import type { SessionRecord } from '../../src/registry/registry';

const record = (sessionId: string, userId: string): SessionRecord => ({ sessionId, userId, roles: [], instanceId: 'test', transport: 'tcp', remoteAddress: '127.0.0.1:1', connectedAt: 0, lastSeenAt: 0 });

describe('MemoryRegistry', () => {
  it('binds within the limit, refuses past it in reject mode', async () => {
    const registry = new MemoryRegistry();
    const policy = { maxPerUser: 1, mode: 'reject' as const };
    assert.deepEqual(await registry.bind(record('s1', 'u'), policy), { isBound: true, evicted: [] });
    const refused = await registry.bind(record('s2', 'u'), policy);
    assert.equal(refused.isBound, false);
    assert.deepEqual(
      (await registry.sessionsOf('u')).map((s) => s.sessionId),
      ['s1'],
    );
    assert.equal(await registry.get('s2'), undefined);
  });

  it('evicts the oldest in replace mode', async () => {
    const registry = new MemoryRegistry();
    const policy = { maxPerUser: 2, mode: 'replace' as const };
    for (const id of ['a', 'b']) await registry.bind(record(id, 'u'), policy);
    const result = await registry.bind(record('c', 'u'), policy);
    assert.ok(result.isBound);
    assert.deepEqual(
      result.evicted.map((s) => s.sessionId),
      ['a'],
    );
    assert.deepEqual(
      (await registry.sessionsOf('u')).map((s) => s.sessionId),
      ['b', 'c'],
    );
  });

  it('unbind forgets the session and, with its last session, the user', async () => {
    const registry = new MemoryRegistry();
    const unlimited = { maxPerUser: Infinity, mode: 'reject' as const };
    await registry.bind(record('x', 'u1'), unlimited);
    await registry.bind(record('y', 'u2'), unlimited);
    assert.deepEqual((await registry.onlineUsers()).sort(), ['u1', 'u2']);
    await registry.unbind('x');
    await registry.unbind('x');
    assert.deepEqual(await registry.onlineUsers(), ['u2']);
  });
});
