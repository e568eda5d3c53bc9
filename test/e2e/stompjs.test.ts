// Unchanged @stomp/stompjs (v7) over `ws`, as a browser app would use it.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@stomp/stompjs';
import type { IMessage, StompConfig } from '@stomp/stompjs';
import WebSocket from 'ws';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';

let broker: RunningServer;
const clients: Client[] = [];

function stompClient(config: StompConfig = {}): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => new WebSocket(`ws://127.0.0.1:${broker.wsPort}/ws`, ['v12.stomp', 'v11.stomp', 'v10.stomp']),
      reconnectDelay: 0,
      ...config,
      onConnect: () => resolve(client),
      onStompError: (frame) => reject(new Error(frame.headers.message)),
      onWebSocketError: () => reject(new Error('websocket error')),
    });
    clients.push(client);
    client.activate();
  });
}

function nextMessage(client: Client, destination: string, headers: Record<string, string> = {}): Promise<IMessage> {
  return new Promise((resolve) => {
    const subscription = client.subscribe(
      destination,
      (message) => {
        subscription.unsubscribe();
        resolve(message);
      },
      headers,
    );
  });
}

function receipt(client: Client, id: string): Promise<void> {
  return new Promise((resolve) => client.watchForReceipt(id, () => resolve()));
}

before(async () => {
  broker = await startBroker({ HEARTBEAT: '1000,1000' });
});

after(async () => {
  await Promise.all(clients.map((c) => c.deactivate()));
  await broker.stop();
});

describe('@stomp/stompjs', { timeout: 10000 }, () => {
  it('connects with 1.2, heart-beats negotiated, and publishes to a topic subscriber', async () => {
    const sub = await stompClient({ connectHeaders: { login: 'stompjs-user' } });
    assert.equal(sub.connectedVersion, '1.2');
    const pub = await stompClient();
    const got = new Promise<IMessage>((resolve) => sub.subscribe('/topic/js', resolve));
    const subscribed = receipt(sub, 'js-sub');
    sub.subscribe('/topic/barrier', () => undefined, { receipt: 'js-sub' });
    await subscribed;
    pub.publish({ destination: '/topic/js', body: 'hi from stompjs', headers: { 'x-app': 'quiz' } });
    const message = await got;
    assert.equal(message.body, 'hi from stompjs');
    assert.equal(message.headers['x-app'], 'quiz');
    assert.equal(message.headers.destination, '/topic/js');
  });

  it('acks client-individual queue messages; a NACKed one comes back redelivered', async () => {
    const pub = await stompClient();
    for (const body of ['a', 'b']) pub.publish({ destination: '/queue/js-work', body });
    const sent = receipt(pub, 'q-sent');
    pub.publish({ destination: '/queue/js-work', body: 'c', headers: { receipt: 'q-sent' } });
    await sent;
    const consumer = await stompClient();
    const seen: IMessage[] = [];
    let onSeen = (): void => undefined;
    consumer.subscribe(
      '/queue/js-work',
      (m) => {
        seen.push(m);
        onSeen();
      },
      { ack: 'client-individual' },
    );
    const count = (n: number) =>
      new Promise<void>((resolve) => {
        onSeen = () => seen.length >= n && resolve();
        onSeen();
      });
    await count(3);
    assert.deepEqual(
      seen.map((m) => m.body),
      ['a', 'b', 'c'],
    );
    seen[0]!.ack();
    seen[2]!.ack();
    seen[1]!.nack();
    await count(4);
    assert.equal(seen[3]!.body, 'b');
    assert.equal(seen[3]!.headers.redelivered, 'true');
    seen[3]!.ack();
  });

  it('binary bodies, and frames split across WebSocket messages (splitLargeFrames)', async () => {
    const sub = await stompClient();
    const pub = await stompClient({ splitLargeFrames: true, maxWebSocketChunkSize: 1024 });
    const binary = new Uint8Array(5000).map((_, i) => (i * 7) % 256);
    const got = nextMessage(sub, '/topic/js-bin');
    const ready = receipt(sub, 'bin-ready');
    sub.subscribe('/topic/barrier2', () => undefined, { receipt: 'bin-ready' });
    await ready;
    pub.publish({ destination: '/topic/js-bin', binaryBody: binary, headers: { 'content-type': 'application/octet-stream' } });
    const message = await got;
    assert.deepEqual(Buffer.from(message.binaryBody), Buffer.from(binary));
  });

  it('large and small frames batched into one fragmented WebSocket message, text and binary', async () => {
    const sub = await stompClient();
    const pub = await stompClient();
    const received: IMessage[] = [];
    const ready = receipt(sub, 'frag-ready');
    sub.subscribe('/topic/js-frag', (m) => received.push(m), { receipt: 'frag-ready' });
    await ready;
    // A COMMIT publishes its SENDs in one turn: one batch, so one message in several fragments
    // (large frames are not copied into it).
    const bodies = ['small-0', 'big-1'.padEnd(8192, '.'), 'small-2', 'big-3'.padEnd(20000, '+'), 'small-4'];
    const binary = new Uint8Array(9000).map((_, i) => (i * 13) % 256);
    for (const round of [0, 1]) {
      const tx = pub.begin();
      for (const body of bodies) pub.publish({ destination: '/topic/js-frag', body, headers: { transaction: tx.id } });
      if (round === 1) pub.publish({ destination: '/topic/js-frag', binaryBody: binary, headers: { transaction: tx.id, 'content-type': 'application/octet-stream' } });
      tx.commit();
    }
    const expected = bodies.length * 2 + 1;
    const deadline = Date.now() + 5000;
    while (received.length < expected && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.equal(received.length, expected);
    assert.deepEqual(
      received.slice(0, bodies.length * 2).map((m) => m.body),
      [...bodies, ...bodies],
    );
    assert.deepEqual(Buffer.from(received[expected - 1]!.binaryBody), Buffer.from(binary));
  });

  it('transactions: nothing arrives before commit', async () => {
    const sub = await stompClient();
    const pub = await stompClient();
    const bodies: string[] = [];
    const ready = receipt(sub, 'tx-ready');
    sub.subscribe('/topic/js-tx', (m) => bodies.push(m.body), { receipt: 'tx-ready' });
    await ready;
    const tx = pub.begin();
    pub.publish({ destination: '/topic/js-tx', body: 'one', headers: { transaction: tx.id } });
    const held = receipt(pub, 'held');
    pub.publish({ destination: '/topic/js-tx', body: 'two', headers: { transaction: tx.id, receipt: 'held' } });
    await held;
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.deepEqual(bodies, []);
    tx.commit();
    await new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (bodies.length === 2) {
          clearInterval(check);
          resolve();
        }
      }, 10);
    });
    assert.deepEqual(bodies, ['one', 'two']);
  });

  it('a refused frame reaches onStompError with the code in the message header', async () => {
    const client = await stompClient();
    const error = new Promise<string>((resolve) => {
      client.onStompError = (frame) => resolve(frame.headers.message ?? '');
    });
    client.publish({ destination: '/nowhere/x', body: 'x' });
    assert.match(await error, /^UNKNOWN_DESTINATION/);
  });
});
