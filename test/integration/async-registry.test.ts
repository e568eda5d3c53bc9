// The single-session guarantees with a registry that answers later, as the Redis registry
// will: the check-and-bind stays atomic, and a session that dies while bind is in flight
// leaves neither a binding nor a second live session behind.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MemoryRegistry } from '../../src/registry/memory-registry';
import type { BindPolicy, BindResult, SessionRecord } from '../../src/registry/registry';
import type { RunningServer } from '../../src/server';
import { harness } from '../helpers/harness';
import { header } from '../helpers/raw-client';
import type { RawClient } from '../helpers/raw-client';

/** The memory registry, with every call answered `delayMs` later. */
class SlowRegistry extends MemoryRegistry {
  constructor(private readonly delayMs: number) {
    super();
  }

  private later<T>(value: () => Promise<T>): Promise<T> {
    return new Promise((resolve) => setTimeout(resolve, this.delayMs)).then(value);
  }

  override bind(record: SessionRecord, policy: BindPolicy): Promise<BindResult> {
    return this.later(() => super.bind(record, policy));
  }

  override unbind(sessionId: string): Promise<void> {
    return this.later(() => super.unbind(sessionId));
  }
}

const h = harness();
const broker = (overrides: Record<string, string>, delayMs: number): Promise<RunningServer> => h.broker(overrides, { registry: new SlowRegistry(delayMs) });
const client = (b: RunningServer): Promise<RawClient> => h.tcp(b);

function connectFrame(c: RawClient, login: string): void {
  c.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', login });
}

const liveSessionsOf = (b: RunningServer, userId: string) => [...b.sessions()].filter((s) => s.isOpen && s.principal?.userId === userId);

describe('single-session policy with an asynchronous registry', { timeout: 15000 }, () => {
  it('reject: of simultaneous CONNECTs exactly one wins', async () => {
    const b = await broker({ SINGLE_SESSION: 'reject' }, 15);
    const racers = await Promise.all([1, 2, 3, 4].map(() => client(b)));
    for (const c of racers) connectFrame(c, 'racer');
    const frames = await Promise.all(racers.map((c) => c.next()));
    assert.deepEqual(frames.map((f) => f.command).sort(), ['CONNECTED', 'ERROR', 'ERROR', 'ERROR']);
    assert.equal((await b.registry.sessionsOf('racer')).length, 1);
  });

  it('replace: a newcomer that dies while bind is in flight still evicts the old session; never two live sessions', async () => {
    const b = await broker({ SINGLE_SESSION: 'replace' }, 40);
    const old = await client(b);
    connectFrame(old, 'mover');
    await old.expect('CONNECTED');

    const quitter = await client(b);
    connectFrame(quitter, 'mover');
    await new Promise((resolve) => setTimeout(resolve, 10));
    quitter.destroy(); // gone before the registry answers

    assert.match(header(await old.expect('ERROR', 2000), 'message') ?? '', /^SESSION_REPLACED/, 'the evicted session is closed');
    await old.waitClosed();
    await new Promise((resolve) => setTimeout(resolve, 150)); // the quitter's unbind lands
    assert.deepEqual(await b.registry.sessionsOf('mover'), []);
    assert.equal(liveSessionsOf(b, 'mover').length, 0);

    const third = await client(b);
    connectFrame(third, 'mover');
    await third.expect('CONNECTED');
    assert.equal(liveSessionsOf(b, 'mover').length, 1);
    assert.equal((await b.registry.sessionsOf('mover')).length, 1);
  });

  it('a session closed during bind is unbound, so the user can connect again', async () => {
    const b = await broker({ SINGLE_SESSION: 'reject' }, 40);
    const quitter = await client(b);
    connectFrame(quitter, 'flaky');
    await new Promise((resolve) => setTimeout(resolve, 10));
    quitter.destroy();
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.deepEqual(await b.registry.sessionsOf('flaky'), []);
    const next = await client(b);
    connectFrame(next, 'flaky');
    await next.expect('CONNECTED');
  });

  it('events stay in order: connect before disconnect, even for a session gone right after binding', async () => {
    const b = await broker({}, 20);
    const log: string[] = [];
    b.events.on('connect', (s) => log.push(`connect ${s.userId}`));
    b.events.on('disconnect', (e) => log.push(`disconnect ${e.session.userId}`));
    const c = await client(b);
    connectFrame(c, 'brief');
    await c.expect('CONNECTED');
    c.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(log, ['connect brief', 'disconnect brief']);
  });
});
