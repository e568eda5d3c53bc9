// Presence on a real 3-master Redis Cluster: a room's keys in one slot (the scripts run
// there), events over sharded pub/sub (the deciding instance SPUBLISHes what the script
// returns), the companion destination, the snapshot, and the same member list from both
// instances.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { until } from '../helpers/until';
import { RawClient, clientsOfThisFile, connectedAs, header } from '../helpers/raw-client';
import { startRedisCluster } from '../helpers/redis';
import type { RedisCluster } from '../helpers/redis';

const clients = clientsOfThisFile();

const client = (port: number, login: string): Promise<RawClient> => connectedAs(clients, port, login);

function presenceOf(c: RawClient): { kind: string; body: { type: string; userId: string; reason?: string | null; members?: { userId: string }[] } }[] {
  return c.frames.filter((f) => f.command === 'MESSAGE' && header(f, 'x-presence') !== undefined).map((f) => ({ kind: header(f, 'x-presence')!, body: JSON.parse(f.body.toString()) as never }));
}

describe('presence on a Redis Cluster', { timeout: 60000 }, () => {
  let cluster: RedisCluster;
  let a: RunningServer;
  let b: RunningServer;

  before(async () => {
    cluster = await startRedisCluster();
    const env = { REDIS_CLUSTER_NODES: cluster.nodes, HEARTBEAT: '0,0', PRESENCE_DESTINATIONS: '/topic/room.*', PRESENCE_COMPANION_SUFFIX: '.presence' };
    [a, b] = await Promise.all([startBroker({ ...env, INSTANCE_ID: 'cl-a' }), startBroker({ ...env, INSTANCE_ID: 'cl-b' })]);
  });
  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await cluster?.stop();
  });

  it('JOIN and LEAVE cross instances once, on the room and its companion; snapshot first; lists agree', async () => {
    const room = '/topic/room.cl';
    const watcher = await client(a.tcpPort!, 'cl-watch');
    watcher.sendFrame('SUBSCRIBE', { destination: room, id: 'r', 'x-presence-snapshot': 'true' });
    watcher.sendFrame('SUBSCRIBE', { destination: `${room}.presence`, id: 'c', receipt: 'ready' });
    await until(() => watcher.frames.some((f) => f.command === 'RECEIPT'), 'the RECEIPT');
    await until(() => presenceOf(watcher).some((e) => e.kind === 'snapshot'), 'the snapshot');
    assert.equal(presenceOf(watcher)[0]!.kind, 'snapshot');
    assert.deepEqual(
      presenceOf(watcher)[0]!.body.members!.map((m) => m.userId),
      ['cl-watch'],
    );
    // The channels are shard channels; wait until a listens on both (b's subscriber is its own business).
    const shardSubscribers = (channel: string): number => cluster.servers.map((s) => Number(s.cli('pubsub', 'shardnumsub', channel).trim().split('\n')[1])).reduce((x, y) => x + y, 0);
    await until(() => shardSubscribers(`ws:dest:${room}`) >= 1 && shardSubscribers(`ws:dest:${room}.presence`) >= 1, 'shard subscriptions');

    const guest = await client(b.tcpPort!, 'cl-guest');
    guest.sendFrame('SUBSCRIBE', { destination: room, id: 'r' });
    await until(() => presenceOf(watcher).filter((e) => e.body.userId === 'cl-guest').length === 2, 'the JOIN on the room and on the companion');
    const lists = async (): Promise<string[][]> => Promise.all([a, b].map(async (x) => (await x.presence.members(room)).map((m) => m.userId).sort()));
    assert.deepEqual(await lists(), [
      ['cl-guest', 'cl-watch'],
      ['cl-guest', 'cl-watch'],
    ]);
    guest.destroy();
    await until(() => presenceOf(watcher).filter((e) => e.body.userId === 'cl-guest').length === 4, 'the LEAVE on both');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const guestEvents = presenceOf(watcher).filter((e) => e.body.userId === 'cl-guest');
    assert.deepEqual(
      guestEvents.map((e) => `${e.body.type}:${e.body.reason}`),
      ['JOIN:null', 'JOIN:null', 'LEAVE:socket-closed', 'LEAVE:socket-closed'],
    );
    assert.deepEqual(await lists(), [['cl-watch'], ['cl-watch']]);
  });
});
