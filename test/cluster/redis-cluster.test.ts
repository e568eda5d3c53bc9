// Two stompd processes on a real 3-master Redis Cluster (REDIS_CLUSTER_NODES): topic and
// user-destination relay over sharded pub/sub (SPUBLISH/SSUBSCRIBE), and the single-session
// policy decided atomically in the user's hash slot under a 20-way race.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BrokerProcess } from '../helpers/broker-process';
import { RawClient, header } from '../helpers/raw-client';
import { startRedisCluster } from '../helpers/redis';
import type { RedisCluster } from '../helpers/redis';

const clients: RawClient[] = [];
after(() => {
  for (const c of clients) c.destroy();
});

async function client(port: number, login: string): Promise<RawClient> {
  const c = await RawClient.tcp(port);
  clients.push(c);
  await c.connect({ login });
  return c;
}

describe('several instances on a Redis Cluster', { timeout: 120000 }, () => {
  let cluster: RedisCluster;
  let a: BrokerProcess;
  let b: BrokerProcess;

  before(async () => {
    cluster = await startRedisCluster();
    const env = { REDIS_CLUSTER_NODES: cluster.nodes, HEARTBEAT: '0,0', SINGLE_SESSION: 'reject' };
    [a, b] = await Promise.all([BrokerProcess.start(env), BrokerProcess.start(env)]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await cluster?.stop();
  });

  it('topic messages cross instances over sharded pub/sub, in order, once each', async () => {
    const sub = await client(b.tcpPort, 'cluster-sub');
    sub.sendFrame('SUBSCRIBE', { destination: '/topic/cluster.news', id: 's', receipt: 'r' });
    await sub.expect('RECEIPT');
    // The channel is a shard channel: it shows in PUBSUB SHARDNUMSUB on the node owning its slot.
    const shardSubscribers = (): number =>
      cluster.servers.map((s) => Number(s.cli('pubsub', 'shardnumsub', 'ws:dest:/topic/cluster.news').trim().split('\n')[1])).reduce((x, y) => x + y, 0);
    const deadline = Date.now() + 5000;
    while (shardSubscribers() < 1) {
      if (Date.now() > deadline) throw new Error('no shard subscriber');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const pub = await client(a.tcpPort, 'cluster-pub');
    for (let i = 0; i < 100; i++) pub.sendFrame('SEND', { destination: '/topic/cluster.news', seq: String(i) }, `n${i}`);
    for (let i = 0; i < 100; i++) assert.equal(header(await sub.expect('MESSAGE'), 'seq'), String(i));
    await sub.expectSilence(200);
  });

  it('20 simultaneous CONNECTs of one user over two instances under reject: exactly one wins', async () => {
    const sockets = await Promise.all(Array.from({ length: 20 }, (_, i) => RawClient.tcp(i % 2 === 0 ? a.tcpPort : b.tcpPort)));
    clients.push(...sockets);
    for (const s of sockets) s.sendFrame('CONNECT', { 'accept-version': '1.2', host: '/', 'heart-beat': '0,0', login: 'cluster-racer' });
    const answers = await Promise.all(sockets.map((s) => s.next(5000)));
    assert.equal(answers.filter((f) => f.command === 'CONNECTED').length, 1);
    for (const refusal of answers.filter((f) => f.command === 'ERROR')) assert.match(header(refusal, 'message') ?? '', /^DUPLICATE_SESSION:/);
    assert.equal(answers.length, 20);
  });
});
