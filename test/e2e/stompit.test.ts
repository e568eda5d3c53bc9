// Unchanged stompit over raw TCP.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import stompit from 'stompit';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';

let broker: RunningServer;
const clients: stompit.Client[] = [];

function connect(login: string): Promise<stompit.Client> {
  return new Promise((resolve, reject) => {
    stompit.connect({ host: '127.0.0.1', port: broker.tcpPort!, connectHeaders: { host: '/', login, 'heart-beat': '1000,1000' } }, (error, client) => {
      if (error) reject(error);
      else {
        client.on('error', () => undefined); // destroy() below reports its own reason as an error
        clients.push(client);
        resolve(client);
      }
    });
  });
}

function readBody(message: stompit.Client.Message): Promise<string> {
  return new Promise((resolve, reject) => message.readString('utf-8', (error, body) => (error ? reject(error) : resolve(body ?? ''))));
}

before(async () => {
  broker = await startBroker({ HEARTBEAT: '1000,1000' });
});

after(async () => {
  for (const client of clients) client.destroy(new Error('test over'));
  await broker.stop();
});

describe('stompit', { timeout: 10000 }, () => {
  it('subscribes, sends and receives over TCP', async () => {
    const sub = await connect('tcp-sub');
    const got = new Promise<{ body: string; headers: Record<string, unknown> }>((resolve, reject) => {
      sub.subscribe({ destination: '/topic/stompit', ack: 'auto' }, (error, message) => {
        if (error) return reject(error);
        readBody(message).then((body) => resolve({ body, headers: (message as unknown as { headers: Record<string, unknown> }).headers }), reject);
      });
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const pub = await connect('tcp-pub');
    const frame = pub.send({ destination: '/topic/stompit', 'content-type': 'text/plain' });
    frame.write('hello over tcp');
    frame.end();
    const message = await got;
    assert.equal(message.body, 'hello over tcp');
    assert.equal(message.headers['destination'], '/topic/stompit');
  });

  it('client acks on a queue; the unacked message goes to the next consumer', async () => {
    const pub = await connect('tcp-queue-pub');
    for (const body of ['first', 'second']) {
      const frame = pub.send({ destination: '/queue/stompit' });
      frame.end(body);
    }
    await new Promise<void>((resolve, reject) => pub.send({ destination: '/queue/stompit-sync' }, { onReceipt: resolve, onError: reject }).end(''));
    const consumer = await connect('tcp-consumer');
    const bodies: string[] = [];
    let acked!: Promise<void>;
    await new Promise<void>((resolve, reject) => {
      consumer.subscribe({ destination: '/queue/stompit', ack: 'client-individual' }, (error, message) => {
        if (error) return reject(error);
        readBody(message).then((body) => {
          bodies.push(body);
          if (body === 'first') acked = new Promise((ok, fail) => consumer.ack(message, {}, { onReceipt: ok, onError: fail }));
          if (bodies.length === 2) resolve();
        }, reject);
      });
    });
    await acked;
    consumer.destroy(new Error('consumer vanished'));
    const heir = await connect('tcp-heir');
    const redelivered = await new Promise<string>((resolve, reject) => {
      heir.subscribe({ destination: '/queue/stompit', ack: 'auto' }, (error, message) => {
        if (error) return reject(error);
        readBody(message).then(resolve, reject);
      });
    });
    assert.deepEqual(bodies, ['first', 'second']);
    assert.equal(redelivered, 'second');
  });
});
