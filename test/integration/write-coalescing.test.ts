// WRITE_COALESCE_MS: after a write pass that reached many connections (a fan-out), the next
// pass waits until the window has passed, so messages published one at a time (here 12 SENDs
// 10 ms apart, each read in a turn of its own) reach a subscriber in few writes instead of one
// each. Counted as the chunks a raw TCP subscriber reads, with a real broker and 40
// subscribers.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { RawClient } from '../helpers/raw-client';

const MESSAGES = 12;
const brokers: RunningServer[] = [];
const sockets: net.Socket[] = [];

after(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(brokers.map((b) => b.stop()));
});

/** A subscriber whose reads are counted once its RECEIPT is in. */
async function subscriber(port: number, destination: string): Promise<{ chunks: () => number; messages: () => number }> {
  const socket = net.connect(port, '127.0.0.1');
  sockets.push(socket);
  await new Promise((resolve) => socket.once('connect', resolve));
  socket.write(`CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0SUBSCRIBE\nid:1\ndestination:${destination}\nreceipt:r\n\n\0`);
  let seen = '';
  let chunks = 0;
  let messages = 0;
  await new Promise<void>((resolve) => {
    socket.on('data', (chunk: Buffer) => {
      if (!seen.includes('RECEIPT')) {
        seen += chunk.toString();
        if (seen.includes('RECEIPT')) resolve();
        return;
      }
      chunks++;
      messages += chunk.toString().split('MESSAGE\n').length - 1;
    });
  });
  return { chunks: () => chunks, messages: () => messages };
}

/** Reads per subscriber for MESSAGES SENDs 10 ms apart, with 40 subscribers, at `windowMs`. */
async function readsPerSubscriber(windowMs: number): Promise<number[]> {
  const broker = await startBroker({ WRITE_COALESCE_MS: String(windowMs), MAX_CONNECTIONS_PER_ADDRESS: '0' });
  brokers.push(broker);
  const destination = `/topic/coalesce-${windowMs}`;
  const subscribers = await Promise.all(Array.from({ length: 40 }, () => subscriber(broker.tcpPort!, destination)));
  const publisher = await RawClient.tcp(broker.tcpPort!);
  await publisher.connect();
  for (let i = 0; i < MESSAGES; i++) {
    publisher.sendFrame('SEND', { destination }, `m${i}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  publisher.sendFrame('SEND', { destination, receipt: 'last' }, 'last');
  await publisher.expect('RECEIPT');
  await publisher.waitUntil(() => subscribers.every((s) => s.messages() === MESSAGES + 1), 10_000, 'every message at every subscriber');
  publisher.close();
  return subscribers.map((s) => s.chunks());
}

describe('write coalescing (WRITE_COALESCE_MS)', { timeout: 60_000 }, () => {
  it('a fan-out of messages published one at a time reaches each subscriber in fewer writes with a window', async () => {
    const coalesced = await readsPerSubscriber(100);
    const everyTurn = await readsPerSubscriber(0);
    const median = (values: number[]): number => [...values].sort((a, b) => a - b)[values.length >> 1]!;
    // 13 messages within about 130 ms: with a 100 ms window they come in two or three writes each.
    assert.ok(median(coalesced) <= 4, `reads per subscriber with a 100 ms window: ${coalesced.join(',')}`);
    assert.ok(median(everyTurn) > median(coalesced), `every turn: ${everyTurn.join(',')}; coalesced: ${coalesced.join(',')}`);
  });
});
