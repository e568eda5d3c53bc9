// The `user-id` header: set by the broker from the sender's token, never taken from the SEND.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Frame } from '../../src/codec';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import type { RawClient } from '../helpers/raw-client';
import { header } from '../helpers/raw-client';
import { ClientPool, SECRET, accepted, bearer, mint } from '../helpers/jwt';

const pool = new ClientPool();
let b: RunningServer;

before(async () => {
  b = await startBroker({ HEARTBEAT: '0,0', JWT_SECRET: SECRET });
});

after(async () => {
  pool.destroyAll();
  await b.stop();
});

async function connectedAs(sub: string, transport: 'tcp' | 'ws' = 'tcp'): Promise<RawClient> {
  const client = transport === 'tcp' ? await pool.tcp(b.tcpPort) : await pool.ws(b.wsPort);
  await accepted(client, bearer(await mint(SECRET, { sub })), sub);
  return client;
}

async function subscribed(client: RawClient, destination: string, id: string): Promise<void> {
  client.sendFrame('SUBSCRIBE', { id, destination, receipt: `sub-${id}` });
  const receipt = await client.expect('RECEIPT');
  assert.equal(header(receipt, 'receipt-id'), `sub-${id}`);
}

/**
 * A subscriber that keeps the raw bytes: our decoder (like STOMP 1.2 says) keeps only the
 * first of a repeated header, so a second `user-id` line would be invisible in a decoded frame.
 */
async function rawSubscriber(sub: string, destination: string): Promise<{ messageHead: () => Promise<string[]>; close: () => void }> {
  const token = await mint(SECRET, { sub });
  const socket = net.connect(b.tcpPort!, '127.0.0.1');
  let received = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (received += chunk));
  socket.on('error', () => undefined);
  const waitFor = async (what: RegExp): Promise<RegExpExecArray> => {
    const deadline = Date.now() + 3000;
    for (;;) {
      const match = what.exec(received);
      if (match) return match;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} in ${JSON.stringify(received)}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };
  socket.write(`CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nAuthorization:Bearer ${token}\n\n\0`);
  await waitFor(/^CONNECTED\n/);
  socket.write(`SUBSCRIBE\nid:raw\ndestination:${destination}\nreceipt:raw-ready\n\n\0`);
  await waitFor(/RECEIPT\nreceipt-id:raw-ready\n/);
  return {
    // The header lines of the first MESSAGE frame, exactly as written on the wire.
    messageHead: async () => (await waitFor(/(?:^|\0\n*)MESSAGE\n([\s\S]*?)\n\n/))[1]!.split('\n'),
    close: () => socket.destroy(),
  };
}

const userIdHeaders = (frame: Frame): string[] => frame.headers.filter(([name]) => name.toLowerCase() === 'user-id').map(([, value]) => value);

describe('the user-id header', { timeout: 15000 }, () => {
  it("a MESSAGE carries user-id = the sender's sub", async () => {
    const subscriber = await connectedAs('sub-alice');
    const sender = await connectedAs('sender-bob', 'ws');
    await subscribed(subscriber, '/topic/chat', '1');
    sender.sendFrame('SEND', { destination: '/topic/chat', 'content-type': 'text/plain' }, 'hello');
    const message = await subscriber.expect('MESSAGE');
    assert.equal(message.body.toString(), 'hello');
    assert.deepEqual(userIdHeaders(message), ['sender-bob']);
  });

  it('a SEND carrying its own `user-id: forged` is delivered with the real one, only once', async () => {
    const subscriber = await connectedAs('sub-carol');
    const sender = await connectedAs('sender-dave');
    await subscribed(subscriber, '/topic/forge', '1');
    sender.sendFrame(
      'SEND',
      [
        ['destination', '/topic/forge'],
        ['user-id', 'forged'],
        ['x-app', 'quiz'],
        ['user-id', 'forged-again'],
      ],
      'trust me',
    );
    const message = await subscriber.expect('MESSAGE');
    assert.deepEqual(userIdHeaders(message), ['sender-dave']);
    assert.equal(header(message, 'x-app'), 'quiz', 'other headers are forwarded');
    assert.ok(!JSON.stringify(message.headers).includes('forged'));
  });

  it("on the wire: exactly one user-id line, the broker's, even when the SEND repeats a forged one", async () => {
    const subscriber = await rawSubscriber('wire-ivan', '/topic/wire');
    try {
      const sender = await connectedAs('sender-judy');
      sender.sendFrame(
        'SEND',
        [
          ['destination', '/topic/wire'],
          ['user-id', 'forged'],
          ['x-app', 'quiz'],
          ['user-id', 'forged-again'],
        ],
        'trust me',
      );
      const head = await subscriber.messageHead();
      assert.deepEqual(
        head.filter((line) => line.toLowerCase().startsWith('user-id:')),
        ['user-id:sender-judy'],
      );
      assert.ok(head.includes('x-app:quiz'), JSON.stringify(head));
    } finally {
      subscriber.close();
    }
  });

  it('the same holds for a queue message stored before its consumer came', async () => {
    const sender = await connectedAs('sender-erin');
    sender.sendFrame('SEND', { destination: '/queue/forge', 'user-id': 'forged', receipt: 'sent' }, 'stored');
    assert.equal(header(await sender.expect('RECEIPT'), 'receipt-id'), 'sent');
    const consumer = await connectedAs('consumer-frank', 'ws');
    consumer.sendFrame('SUBSCRIBE', { id: '1', destination: '/queue/forge' });
    const message = await consumer.expect('MESSAGE');
    assert.equal(message.body.toString(), 'stored');
    assert.deepEqual(userIdHeaders(message), ['sender-erin']);
  });

  it("a user-destination message carries the sender's user-id", async () => {
    const recipient = await connectedAs('grace');
    const sender = await connectedAs('heidi');
    await subscribed(recipient, '/user/queue/replies', '1');
    sender.sendFrame('SEND', { destination: '/user/grace/queue/replies', 'user-id': 'forged' }, 'psst');
    const message = await recipient.expect('MESSAGE');
    assert.equal(message.body.toString(), 'psst');
    assert.deepEqual(userIdHeaders(message), ['heidi']);
  });
});
