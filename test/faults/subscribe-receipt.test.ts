// Issue 20, point 5, on its own: a SUBSCRIBE's RECEIPT means the subscription is in place
// everywhere, so a message published on another instance the moment the RECEIPT arrives is
// delivered. The race is narrow (the relay's SUBSCRIBE to Redis against the other instance's
// PUBLISH), so it is tried many times on fresh destinations, with no fault injected.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RawClient, header } from '../helpers/raw-client';
import { FaultCluster } from './cluster';

const TRIES = 500;

describe('SUBSCRIBE RECEIPT across instances', { timeout: 180_000 }, () => {
  let cluster: FaultCluster;
  const clients: RawClient[] = [];

  before(async () => {
    cluster = await FaultCluster.start({ slots: ['A', 'B'], mode: 'reject', instanceHeartbeatMs: 500, presenceDestinations: '/topic/room.*' });
  });

  after(async () => {
    for (const c of clients) c.destroy();
    await cluster?.stop();
  });

  it(`a message published on another instance right after the RECEIPT arrives (${TRIES} fresh topics)`, async () => {
    const subscriber = await RawClient.tcp(cluster.port('A', 'tcp'));
    const publisher = await RawClient.tcp(cluster.port('B', 'tcp'));
    clients.push(subscriber, publisher);
    await subscriber.connect({ login: 'receipt-subscriber' });
    await publisher.connect({ login: 'receipt-publisher' });
    const lost: number[] = [];
    for (let i = 0; i < TRIES; i++) {
      const destination = `/topic/receipt-race.${i}`;
      subscriber.sendFrame('SUBSCRIBE', { destination, id: `s${i}`, receipt: `r${i}` });
      await subscriber.waitUntil(() => subscriber.frames.some((f) => f.command === 'RECEIPT' && header(f, 'receipt-id') === `r${i}`), 5000, `RECEIPT r${i}`);
      publisher.sendFrame('SEND', { destination, n: String(i) }, 'after the receipt');
      const isDelivered = await subscriber
        .waitUntil(() => subscriber.frames.some((f) => f.command === 'MESSAGE' && header(f, 'n') === String(i)), 2000)
        .then(
          () => true,
          () => false,
        );
      if (!isDelivered) lost.push(i);
      subscriber.sendFrame('UNSUBSCRIBE', { id: `s${i}` });
      if (subscriber.frames.length > 200) subscriber.frames.splice(0, subscriber.frames.length - 10);
    }
    assert.deepEqual(lost, [], `${lost.length} of ${TRIES} messages published right after the SUBSCRIBE RECEIPT were lost`);
  });
});
