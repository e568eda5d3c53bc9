// 200 users (PRESENCE_RANDOM_USERS) join and leave one room at random for 30 s
// (PRESENCE_RANDOM_MS) through two instances on one Redis, with unchanged @stomp/stompjs
// clients over WebSocket: by UNSUBSCRIBE, by DISCONNECT, by a socket torn down without one;
// a fifth of the users have a second session on the other instance. Watchers on both
// instances keep a member list from their snapshot and the JOIN/LEAVE messages (two start
// before the run, two join half-way through). At the end every watcher's list, and both
// instances' members(), equal the users that are still subscribed, and no watcher ever saw a
// JOIN of a member it already had or a LEAVE of one it did not.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@stomp/stompjs';
import type { IMessage } from '@stomp/stompjs';
import WebSocket from 'ws';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

const USERS = Number(process.env.PRESENCE_RANDOM_USERS ?? 200);
const DURATION_MS = Number(process.env.PRESENCE_RANDOM_MS ?? 20_000);
const ROOM = '/topic/room.random';
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const between = (minMs: number, maxMs: number): number => minMs + Math.floor(Math.random() * (maxMs - minMs));

interface Connection {
  client: Client;
  socket: () => WebSocket | undefined;
}

function connect(broker: RunningServer, login: string): Promise<Connection> {
  let socket: WebSocket | undefined;
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => (socket = new WebSocket(`ws://127.0.0.1:${broker.wsPort}/ws`, ['v12.stomp'])),
      connectHeaders: { login },
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      onConnect: () => resolve({ client, socket: () => socket }),
      onStompError: (frame) => reject(new Error(frame.headers.message)),
      onWebSocketError: () => reject(new Error(`websocket error for ${login}`)),
    });
    client.activate();
  });
}

/** Subscribe and wait for the RECEIPT. */
async function subscribe(client: Client, onMessage: (m: IMessage) => void, headers: Record<string, string> = {}): Promise<{ unsubscribe(): void }> {
  const receipt = `r-${Math.random().toString(36).slice(2)}`;
  const received = new Promise<void>((resolve) => client.watchForReceipt(receipt, () => resolve()));
  const subscription = client.subscribe(ROOM, onMessage, { ...headers, receipt });
  await received;
  return subscription;
}

class Watcher {
  readonly members = new Set<string>();
  readonly anomalies: string[] = [];
  eventCount = 0;
  private sawSnapshot = false;
  connection!: Connection;

  constructor(readonly name: string) {}

  async start(broker: RunningServer): Promise<void> {
    this.connection = await connect(broker, this.name);
    await subscribe(this.connection.client, (m) => this.onMessage(m), { 'x-presence-snapshot': 'true' });
  }

  private onMessage(message: IMessage): void {
    const kind = message.headers['x-presence'];
    const body = JSON.parse(message.body) as { type: string; userId: string; members?: { userId: string }[] };
    if (!this.sawSnapshot) {
      if (kind !== 'snapshot') this.anomalies.push(`first message was ${kind}`);
      this.sawSnapshot = true;
      for (const m of body.members ?? []) this.members.add(m.userId);
      return;
    }
    this.eventCount++;
    if (kind === 'join') {
      if (this.members.has(body.userId)) this.anomalies.push(`JOIN of member ${body.userId}`);
      this.members.add(body.userId);
    } else if (kind === 'leave') {
      if (!this.members.delete(body.userId)) this.anomalies.push(`LEAVE of non-member ${body.userId}`);
    } else {
      this.anomalies.push(`unexpected ${kind}`);
    }
  }
}

/** One session of one user: joins, stays a while, leaves one of three ways, pauses, again. */
class Slot {
  isIn = false;
  private isStopped = false;
  private readonly done: Promise<void>;

  constructor(
    readonly broker: RunningServer,
    readonly userId: string,
    readonly endsAtMs: number,
  ) {
    this.done = this.run();
  }

  stop(): Promise<void> {
    this.isStopped = true;
    return this.done;
  }

  private async run(): Promise<void> {
    await sleep(between(0, 2000));
    while (!this.isStopped && Date.now() < this.endsAtMs) {
      const connection = await connect(this.broker, this.userId);
      const subscription = await subscribe(connection.client, () => undefined);
      this.isIn = true;
      await sleep(between(300, 4000));
      if (this.isStopped || Date.now() >= this.endsAtMs) {
        slotsLeftIn.push(connection);
        return;
      }
      this.isIn = false;
      const way = Math.random();
      if (way < 0.35) {
        subscription.unsubscribe();
        await sleep(between(0, 200));
        await connection.client.deactivate();
      } else if (way < 0.7) {
        await connection.client.deactivate();
      } else {
        connection.socket()?.terminate(); // a tab closed: no DISCONNECT
        await connection.client.deactivate({ force: true });
      }
      await sleep(between(200, 2500));
    }
  }
}

const slotsLeftIn: Connection[] = [];

describe(`${USERS} users join and leave at random for ${DURATION_MS} ms across two instances`, { timeout: DURATION_MS + 90_000 }, () => {
  let redis: RedisServer;
  let a: RunningServer;
  let b: RunningServer;
  const watchers: Watcher[] = [];

  before(async () => {
    redis = await startRedis();
    const env = { REDIS_URL: redis.url, HEARTBEAT: '0,0', PRESENCE_DESTINATIONS: '/topic/room.*' };
    [a, b] = await Promise.all([startBroker({ ...env, INSTANCE_ID: 'rand-a' }), startBroker({ ...env, INSTANCE_ID: 'rand-b' })]);
  });
  after(async () => {
    await Promise.all([...watchers.map((w) => w.connection?.client.deactivate()), ...slotsLeftIn.map((c) => c.client.deactivate())]);
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
  });

  it('every watcher ends with the same, right member list, told once per JOIN and LEAVE', async () => {
    for (const [i, broker] of [a, b, a, b].entries()) {
      const watcher = new Watcher(`watcher-${i}`);
      await watcher.start(broker);
      watchers.push(watcher);
    }
    const endsAtMs = Date.now() + DURATION_MS;
    const slots: Slot[] = [];
    for (let i = 0; i < USERS; i++) {
      const userId = `user-${i}`;
      slots.push(new Slot(i % 2 === 0 ? a : b, userId, endsAtMs));
      if (i % 5 === 0) slots.push(new Slot(i % 2 === 0 ? b : a, userId, endsAtMs));
    }
    await sleep(DURATION_MS / 2);
    for (const [i, broker] of [b, a].entries()) {
      const late = new Watcher(`late-watcher-${i}`);
      await late.start(broker); // its snapshot is taken mid-run
      watchers.push(late);
    }
    await sleep(Math.max(0, endsAtMs - Date.now()));
    await Promise.all(slots.map((s) => s.stop()));

    const expected = [...new Set([...slots.filter((s) => s.isIn).map((s) => s.userId), ...watchers.map((w) => w.name)])].sort();
    const listOf = async (broker: RunningServer): Promise<string[]> => (await broker.presence.members(ROOM)).map((m) => m.userId).sort();
    const deadline = Date.now() + 20_000;
    for (;;) {
      const lists = [...watchers.map((w) => [...w.members].sort()), await listOf(a), await listOf(b)];
      if (lists.every((list) => JSON.stringify(list) === JSON.stringify(expected)) || Date.now() > deadline) break;
      await sleep(200);
    }
    assert.ok(expected.length > watchers.length, 'some users are still in the room at the end');
    // Enough churn to mean something: every user came and went at least once, on average.
    assert.ok(watchers[0]!.eventCount > USERS, `watcher-0 saw ${watchers[0]!.eventCount} events`);
    assert.ok(watchers.at(-1)!.eventCount > USERS / 4, `the last late watcher saw ${watchers.at(-1)!.eventCount} events`);
    console.log(`# presence random run: ${watchers.map((w) => `${w.name} ${w.eventCount} events`).join(', ')}; ${expected.length} members at the end`);
    assert.deepEqual(await listOf(a), expected, 'members() on instance a');
    assert.deepEqual(await listOf(b), expected, 'members() on instance b');
    for (const w of watchers) {
      assert.deepEqual(w.anomalies, [], `${w.name} saw no duplicate or stray event`);
      assert.deepEqual([...w.members].sort(), expected, `${w.name}'s list`);
    }
  });
});
