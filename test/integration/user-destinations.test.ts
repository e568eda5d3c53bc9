// Spring-style user destinations: /user/queue/x subscribed, /user/<userId>/queue/x sent to.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { RawClient, header } from '../helpers/raw-client';

let broker: RunningServer;
const clients: RawClient[] = [];

async function as(login: string, transport: 'tcp' | 'ws' = 'tcp'): Promise<RawClient> {
  const c = transport === 'tcp' ? await RawClient.tcp(broker.tcpPort!) : await RawClient.ws(broker.wsPort!);
  clients.push(c);
  await c.connect({ login });
  return c;
}

async function subscribe(c: RawClient, id: string, destination: string): Promise<void> {
  c.sendFrame('SUBSCRIBE', { id, destination, receipt: `r-${id}` });
  await c.expect('RECEIPT');
}

before(async () => {
  broker = await startBroker({ HEARTBEAT: '0,0' });
});

after(async () => {
  for (const c of clients) c.destroy();
  await broker.stop();
});

describe('user destinations', { timeout: 10000 }, () => {
  it('a SEND to /user/<id>/queue/x reaches every session of that user subscribed to /user/queue/x, and nobody else', async () => {
    const alicePc = await as('alice', 'tcp');
    const alicePhone = await as('alice', 'ws');
    const carol = await as('carol');
    const aliceOther = await as('alice');
    await subscribe(alicePc, 'n', '/user/queue/notes');
    await subscribe(alicePhone, 'n', '/user/queue/notes');
    await subscribe(carol, 'n', '/user/queue/notes');
    await subscribe(aliceOther, 'o', '/user/queue/other');

    const bob = await as('bob');
    bob.sendFrame('SEND', { destination: '/user/alice/queue/notes', receipt: 'sent' }, 'for alice');
    await bob.expect('RECEIPT');
    for (const session of [alicePc, alicePhone]) {
      const message = await session.expect('MESSAGE');
      assert.equal(message.body.toString(), 'for alice');
      assert.equal(header(message, 'destination'), '/user/queue/notes');
      assert.equal(header(message, 'user-id'), 'bob');
    }
    await carol.expectSilence(150);
    await aliceOther.expectSilence(50);
    await bob.expectSilence(50);
  });

  it('/user/topic/x works the same way', async () => {
    const dave = await as('dave');
    await subscribe(dave, 't', '/user/topic/scores');
    const sender = await as('quizmaster');
    sender.sendFrame('SEND', { destination: '/user/dave/topic/scores' }, '42');
    const message = await dave.expect('MESSAGE');
    assert.equal(message.body.toString(), '42');
    assert.equal(header(message, 'destination'), '/user/topic/scores');
  });

  it("a user may not subscribe to another user's destinations", async () => {
    const mallory = await as('mallory');
    mallory.sendFrame('SUBSCRIBE', { id: 'spy', destination: '/user/alice/queue/notes' });
    const error = await mallory.expect('ERROR');
    assert.match(header(error, 'message') ?? '', /^FORBIDDEN/);
    await mallory.waitClosed();
  });

  it("the explicit form of one's own destination is allowed and is the same destination", async () => {
    const erin = await as('erin');
    await subscribe(erin, 'x', '/user/erin/queue/inbox');
    const sender = await as('frank');
    sender.sendFrame('SEND', { destination: '/user/erin/queue/inbox' }, 'hello erin');
    assert.equal((await erin.expect('MESSAGE')).body.toString(), 'hello erin');
  });

  it("a SEND to /user/queue/x goes to the sender's own sessions", async () => {
    const gina = await as('gina');
    const ginaTab = await as('gina');
    await subscribe(ginaTab, 's', '/user/queue/self');
    gina.sendFrame('SEND', { destination: '/user/queue/self' }, 'note to self');
    assert.equal((await ginaTab.expect('MESSAGE')).body.toString(), 'note to self');
  });

  it("a forged user-id on SEND is replaced by the sender's", async () => {
    const hank = await as('hank');
    await subscribe(hank, 's', '/topic/forgery');
    const ivan = await as('ivan');
    ivan.sendFrame('SEND', { destination: '/topic/forgery', 'user-id': 'admin' }, 'x');
    const message = await hank.expect('MESSAGE');
    assert.equal(header(message, 'user-id'), 'ivan');
    assert.equal(message.headers.filter(([name]) => name === 'user-id').length, 1);
  });

  it('/user/ without a queue or topic inside is no destination', async () => {
    const c = await as('jack');
    c.sendFrame('SEND', { destination: '/user/alice/inbox' }, 'x');
    assert.match(header(await c.expect('ERROR'), 'message') ?? '', /^UNKNOWN_DESTINATION/);
  });
});
