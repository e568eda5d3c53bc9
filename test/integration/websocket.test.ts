// The WebSocket transport: subprotocols, framing across messages, binary bodies, batching.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { RawClient, header } from '../helpers/raw-client';

let broker: RunningServer;
const clients: RawClient[] = [];

async function ws(options: Parameters<typeof RawClient.ws>[1] = {}): Promise<RawClient> {
  const c = await RawClient.ws(broker.wsPort!, options);
  clients.push(c);
  return c;
}

before(async () => {
  broker = await startBroker({ HEARTBEAT: '0,0' });
});

after(async () => {
  for (const c of clients) c.destroy();
  await broker.stop();
});

describe('WebSocket transport', { timeout: 10000 }, () => {
  it('offers v12.stomp, v11.stomp and v10.stomp, preferring the newest', async () => {
    for (const [offered, chosen] of [
      [['v10.stomp'], 'v10.stomp'],
      [['v11.stomp'], 'v11.stomp'],
      [['v12.stomp'], 'v12.stomp'],
      [['v10.stomp', 'v11.stomp', 'v12.stomp'], 'v12.stomp'],
    ] as const) {
      const c = await ws({ protocols: [...offered] });
      assert.equal(c.socketProtocol(), chosen);
      await c.connect();
    }
  });

  it('accepts a client that asks for no subprotocol', async () => {
    for (const protocols of [[]]) {
      const c = await ws({ protocols });
      assert.equal(c.socketProtocol(), '');
      assert.equal(header(await c.connect(), 'version'), '1.2');
    }
  });

  it('serves only its path', async () => {
    await assert.rejects(RawClient.ws(broker.wsPort!, { path: '/elsewhere' }), /HTTP 400/);
  });

  it('decodes a frame split across messages and several frames in one message', async () => {
    const sub = await ws();
    await sub.connect();
    const pub = await ws();
    await pub.connect();
    sub.sendFrame('SUBSCRIBE', { id: 's', destination: '/topic/split', receipt: 'ok' });
    await sub.expect('RECEIPT');
    const bytes = Buffer.from('SEND\ndestination:/topic/split\ncontent-length:5\n\nhello\0SEND\ndestination:/topic/split\n\nworld\0\n');
    for (const piece of [bytes.subarray(0, 3), bytes.subarray(3, 20), bytes.subarray(20, 47), bytes.subarray(47)]) pub.send(piece);
    assert.equal((await sub.expect('MESSAGE')).body.toString(), 'hello');
    assert.equal((await sub.expect('MESSAGE')).body.toString(), 'world');
  });

  it('sends non-UTF-8 bodies as binary messages and text ones as text', async () => {
    const sub = await ws();
    await sub.connect();
    sub.sendFrame('SUBSCRIBE', { id: 's', destination: '/topic/bin', receipt: 'ok' });
    await sub.expect('RECEIPT');
    const pub = await RawClient.tcp(broker.tcpPort!);
    clients.push(pub);
    await pub.connect();
    pub.sendFrame('SEND', { destination: '/topic/bin', receipt: 'one' }, 'plain text é');
    await pub.expect('RECEIPT');
    await sub.expect('MESSAGE');
    const binary = Buffer.from([0xff, 0xfe, 0x00, 0x80]);
    pub.sendFrame('SEND', { destination: '/topic/bin' }, binary);
    assert.deepEqual((await sub.expect('MESSAGE')).body, binary);
    const kinds = sub.wsMessages.map((m) => m.isBinary);
    assert.equal(kinds.at(-2), false, 'the UTF-8 message came as text');
    assert.equal(kinds.at(-1), true, 'the binary one came as binary');
  });

  it('batches the frames of one turn into one WebSocket message', async () => {
    const sub = await ws();
    await sub.connect();
    sub.sendFrame('SUBSCRIBE', { id: 's', destination: '/topic/batch', receipt: 'ok' });
    await sub.expect('RECEIPT');
    const before = sub.wsMessages.length;
    const pub = await RawClient.tcp(broker.tcpPort!);
    clients.push(pub);
    await pub.connect();
    let burst = '';
    for (let i = 0; i < 50; i++) burst += `SEND\ndestination:/topic/batch\n\nm${i}\0`;
    pub.send(burst);
    await sub.waitUntil(() => sub.frames.filter((f) => f.command === 'MESSAGE').length === 50, 3000, '50 messages');
    const messages = sub.wsMessages.length - before;
    assert.ok(messages <= 3, `50 frames came in ${messages} WebSocket messages`);
  });
});
