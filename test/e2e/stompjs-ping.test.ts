// @stomp/stompjs's own "Ping" specs, against stompd on its default settings (HEARTBEAT
// 10000,10000): the client asks for 1 s heart-beats and a wrapped WebSocket eats the 1-byte
// heart-beat messages in one direction. The side that stops hearing must close the
// connection after about 2 × 1 s, not after 2 × our 10 s default.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@stomp/stompjs';
import type { IStompSocket } from '@stomp/stompjs';
import WebSocket from 'ws';
import type { DisconnectEvent } from '../../src/session/events';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';

let broker: RunningServer;
const disconnects: DisconnectEvent[] = [];
const clients: Client[] = [];

before(async () => {
  broker = await startBroker({}); // HEARTBEAT and HEARTBEAT_GRACE at their defaults
  broker.events.on('disconnect', (e) => disconnects.push(e));
});

after(async () => {
  await Promise.all(clients.map((c) => c.deactivate()));
  await broker.stop();
});

const byteLength = (data: unknown): number => (typeof data === 'string' ? data.length : (data as ArrayBuffer | Buffer).byteLength);

/** A `ws` WebSocket as stompjs sees it, dropping heart-beats (1-byte messages) in one direction. */
class PingEatingSocket implements IStompSocket {
  private readonly ws: WebSocket;
  private readonly eats: 'incoming' | 'outgoing' | 'none';
  onclose: ((ev?: unknown) => unknown) | null = null;
  onerror: ((ev: unknown) => unknown) | null = null;
  onopen: ((ev?: unknown) => unknown) | null = null;
  private messageHandler: ((ev: unknown) => unknown) | null = null;

  constructor(url: string, eats: 'incoming' | 'outgoing' | 'none') {
    this.ws = new WebSocket(url, ['v12.stomp', 'v11.stomp', 'v10.stomp']);
    this.eats = eats;
    this.ws.onopen = (ev) => this.onopen?.(ev);
    this.ws.onclose = (ev) => this.onclose?.(ev);
    this.ws.onerror = (ev) => this.onerror?.(ev);
    this.ws.onmessage = (ev) => {
      if (this.eats === 'incoming' && byteLength(ev.data) === 1) return;
      this.messageHandler?.(ev);
    };
  }

  get onmessage(): ((ev: unknown) => unknown) | null {
    return this.messageHandler;
  }

  set onmessage(handler: ((ev: unknown) => unknown) | null | undefined) {
    this.messageHandler = handler ?? null;
  }

  get url(): string {
    return this.ws.url;
  }

  get readyState(): number {
    return this.ws.readyState;
  }

  get binaryType(): string {
    return this.ws.binaryType;
  }

  set binaryType(type: string) {
    this.ws.binaryType = type as WebSocket['binaryType'];
  }

  send(data: string | ArrayBufferLike | ArrayBufferView): void {
    if (this.eats === 'outgoing' && byteLength(data) === 1) return;
    this.ws.send(data as Buffer);
  }

  close(): void {
    this.ws.close();
  }

  terminate(): void {
    this.ws.terminate();
  }
}

interface Run {
  client: Client;
  connectedAt: Promise<number>;
  closedAt: Promise<number>;
}

function run(heartbeat: { incoming: number; outgoing: number }, eats: 'incoming' | 'outgoing' | 'none', login: string): Run {
  let onConnected!: (at: number) => void;
  let onClosed!: (at: number) => void;
  const connectedAt = new Promise<number>((resolve) => (onConnected = resolve));
  const closedAt = new Promise<number>((resolve) => (onClosed = resolve));
  const client = new Client({
    webSocketFactory: () => new PingEatingSocket(`ws://127.0.0.1:${broker.wsPort}/ws`, eats),
    connectHeaders: { login },
    heartbeatIncoming: heartbeat.incoming,
    heartbeatOutgoing: heartbeat.outgoing,
    reconnectDelay: 0,
    onConnect: () => onConnected(Date.now()),
    onWebSocketClose: () => onClosed(Date.now()),
  });
  clients.push(client);
  client.activate();
  return { client, connectedAt, closedAt };
}

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// The three run side by side: each takes seconds of waiting, and they share nothing but the broker.
describe('@stomp/stompjs Ping specs against default settings', { timeout: 20000, concurrency: true }, () => {
  it('closes the connection when no incoming ping (the server beats every 1 s as asked)', async () => {
    const { connectedAt, closedAt } = run({ incoming: 1000, outgoing: 0 }, 'incoming', 'ping-in');
    const start = await within(connectedAt, 3000, 'CONNECTED');
    // stompjs closes after 2 × 1 s without server activity, checking every 1 s.
    const end = await within(closedAt, 6000, 'the client closing for lack of server heart-beats');
    assert.ok(end - start >= 1500, `closed after ${end - start} ms, before heart-beats could be missed`);
  });

  it('closes the connection when no outgoing ping (the server expects a beat every 1 s as offered)', async () => {
    const { connectedAt, closedAt } = run({ incoming: 0, outgoing: 1000 }, 'outgoing', 'ping-out');
    const start = await within(connectedAt, 3000, 'CONNECTED');
    // stompd gives up after 1 s × HEARTBEAT_GRACE (2), checking every 500 ms.
    const end = await within(closedAt, 6000, 'the server closing for lack of client heart-beats');
    assert.ok(end - start >= 1500, `closed after ${end - start} ms, before heart-beats could be missed`);
    const event = await waitFor(() => disconnects.find((e) => e.session.userId === 'ping-out'), 2000, 'the disconnect event');
    assert.equal(event.reason, 'heartbeat-timeout');
  });

  it('with heart-beats flowing both ways at 1 s the connection stays up', async () => {
    const { client, connectedAt, closedAt } = run({ incoming: 1000, outgoing: 1000 }, 'none', 'ping-both');
    await within(connectedAt, 3000, 'CONNECTED');
    let timer: NodeJS.Timeout | undefined;
    const threeIntervalsLater = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), 3500)));
    const closedEarly = await Promise.race([closedAt.then(() => true), threeIntervalsLater]).finally(() => clearTimeout(timer));
    assert.equal(closedEarly, false, 'closed although heart-beats were flowing');
    assert.ok(client.connected);
  });
});

async function waitFor<T>(find: () => T | undefined, ms: number, what: string): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
