// The interceptor chain as a seam: extra links see and refuse commands, asynchronous links
// delay them in order, and a session that closes while a link is busy gains nothing.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { StompError } from '../../src/session/errors';
import type { Interceptor } from '../../src/session/interceptor';
import { harness } from '../helpers/harness';
import { until } from '../helpers/until';
import { header } from '../helpers/raw-client';
import type { RawClient } from '../helpers/raw-client';

const h = harness();
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const broker = (links: Interceptor[]): Promise<RunningServer> => h.broker({}, { extraInterceptors: links });
const connected = (b: RunningServer, login: string): Promise<RawClient> => h.connected(b, { login });

describe('interceptor chain', { timeout: 10000 }, () => {
  it('a link sees every command and can refuse with a coded ERROR', async () => {
    const seen: string[] = [];
    const b = await broker([
      {
        name: 'recorder',
        onConnect: (ctx) => void seen.push(`CONNECT ${ctx.principal?.userId}`),
        onSubscribe: (ctx) => void seen.push(`SUBSCRIBE ${ctx.destination}`),
        onSend: (ctx) => {
          seen.push(`SEND ${ctx.destination}`);
          if (ctx.destination === '/topic/secret') throw new StompError('FORBIDDEN', 'not here');
        },
        onUnsubscribe: () => void seen.push('UNSUBSCRIBE'),
        onAck: (ctx) => void seen.push(ctx.frame.command),
        onTransaction: (ctx) => void seen.push(ctx.frame.command),
        onDisconnect: () => void seen.push('DISCONNECT'),
      },
    ]);
    const c = await connected(b, 'watched');
    c.sendFrame('SUBSCRIBE', { id: '1', destination: '/topic/a' });
    c.sendFrame('BEGIN', { transaction: 't' });
    c.sendFrame('SEND', { destination: '/topic/a' }, 'x');
    c.sendFrame('ABORT', { transaction: 't' });
    c.sendFrame('ACK', { id: 'nothing' });
    c.sendFrame('NACK', { id: 'nothing' });
    c.sendFrame('UNSUBSCRIBE', { id: '1', receipt: 'r' });
    await c.waitUntil(() => c.frames.some((f) => f.command === 'RECEIPT'));
    c.sendFrame('SEND', { destination: '/topic/secret', receipt: 's' }, 'x');
    const error = await c.waitUntil(() => c.frames.some((f) => f.command === 'ERROR')).then(() => c.frames.find((f) => f.command === 'ERROR')!);
    assert.match(header(error, 'message') ?? '', /^FORBIDDEN: not here/);
    assert.equal(header(error, 'receipt-id'), 's');
    assert.deepEqual(seen, ['CONNECT watched', 'SUBSCRIBE /topic/a', 'BEGIN', 'SEND /topic/a', 'ABORT', 'ACK', 'NACK', 'UNSUBSCRIBE', 'SEND /topic/secret']);
  });

  it('an asynchronous link delays frames without reordering them', async () => {
    const b = await broker([{ name: 'slow', onSend: () => sleep(30) }]);
    const sub = await connected(b, 'reader');
    sub.sendFrame('SUBSCRIBE', { id: 's', destination: '/topic/order', receipt: 'r' });
    await sub.expect('RECEIPT');
    const pub = await connected(b, 'writer');
    for (const n of [1, 2, 3]) pub.sendFrame('SEND', { destination: '/topic/order', receipt: `r${n}` }, `m${n}`);
    const bodies = [await sub.expect('MESSAGE'), await sub.expect('MESSAGE'), await sub.expect('MESSAGE')].map((m) => m.body.toString());
    assert.deepEqual(bodies, ['m1', 'm2', 'm3']);
    assert.deepEqual(
      [await pub.next(), await pub.next(), await pub.next()].map((f) => header(f, 'receipt-id')),
      ['r1', 'r2', 'r3'],
    );
  });

  it('a session that closes while a link decides gains no subscription', async () => {
    // The link decides only once the session is closed: no timing to win or lose.
    let entered!: () => void;
    const isDeciding = new Promise<void>((resolve) => (entered = resolve));
    let closed!: () => void;
    const isClosed = new Promise<void>((resolve) => (closed = resolve));
    const b = await broker([
      {
        name: 'slow',
        onSubscribe: async () => {
          entered();
          await isClosed;
        },
      },
    ]);
    const c = await connected(b, 'leaver');
    const session = [...b.sessions()].find((s) => s.principal?.userId === 'leaver')!;
    c.sendFrame('SUBSCRIBE', { id: 'q', destination: '/queue/orphan' });
    await isDeciding;
    c.destroy();
    await until(() => session.state === 'closed', 'the session to close');
    closed();
    await sleep(50); // the link's answer is handled
    assert.equal(session.state, 'closed');
    assert.equal(session.subscriptions.size, 0);
    const pub = await connected(b, 'sender');
    pub.sendFrame('SEND', { destination: '/queue/orphan', receipt: 'r' }, 'waits');
    await pub.expect('RECEIPT');
    assert.equal(b.router.queueDepth('/queue/orphan'), 1, 'no dead consumer took it');
  });
});
