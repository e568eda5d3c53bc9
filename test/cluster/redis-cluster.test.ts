// Two stompd processes on a real 3-master Redis Cluster (REDIS_CLUSTER_NODES): topic and
// user-destination relay over sharded pub/sub (SPUBLISH/SSUBSCRIBE), and the single-session
// policy decided atomically in the user's hash slot under a 20-way race.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BrokerProcess } from '../helpers/broker-process';
import { RawClient, clientsOfThisFile, connectedAs, header } from '../helpers/raw-client';
import { startRedisCluster } from '../helpers/redis';
import type { RedisCluster } from '../helpers/redis';

const clients = clientsOfThisFile();

const client = (port: number, login: string): Promise<RawClient> => connectedAs(clients, port, login);

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
    const shardSubscribers = (): number => cluster.servers.map((s) => Number(s.cli('pubsub', 'shardnumsub', 'ws:dest:/topic/cluster.news').trim().split('\n')[1])).reduce((x, y) => x + y, 0);
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

  it('a queue on a Cluster: SENDs on A, consumers on A and B, NACK redelivered across, every message once (queue scripts stay in one slot)', async () => {
    const onA = await client(a.tcpPort, 'cq-a');
    const onB = await client(b.tcpPort, 'cq-b');
    for (const c of [onA, onB]) {
      c.sendFrame('SUBSCRIBE', { destination: '/queue/cluster.work', id: 'q', ack: 'client-individual', 'prefetch-count': '4', receipt: 'rq' });
      await c.expect('RECEIPT');
    }
    const pub = await client(a.tcpPort, 'cq-pub');
    for (let i = 0; i < 60; i++) pub.sendFrame('SEND', { destination: '/queue/cluster.work', seq: String(i), ...(i === 59 ? { receipt: 'sent' } : {}) }, `w${i}`);
    await pub.expect('RECEIPT', 10000);
    const acked: number[] = [];
    let nacked = false;
    const deadline = Date.now() + 15000;
    const taken = [0, 0];
    while (acked.length < 60 && Date.now() < deadline) {
      for (const [i, c] of [onA, onB].entries()) {
        for (; taken[i]! < c.frames.length; taken[i]!++) {
          const m = c.frames[taken[i]!]!;
          if (m.command !== 'MESSAGE') continue;
          if (!nacked && i === 0) {
            nacked = true; // one NACK on A: the message must come back, marked
            c.sendFrame('NACK', { id: header(m, 'ack')! });
            continue;
          }
          acked.push(Number(header(m, 'seq')));
          c.sendFrame('ACK', { id: header(m, 'ack')! });
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.deepEqual(
      [...acked].sort((x, y) => x - y),
      Array.from({ length: 60 }, (_, i) => i),
      'each once',
    );
    const all = [...onA.frames, ...onB.frames].filter((f) => f.command === 'MESSAGE');
    assert.equal(all.filter((f) => header(f, 'redelivered') === 'true').length, 1, 'the NACKed one, marked');
    assert.ok(onA.frames.some((f) => f.command === 'MESSAGE') && onB.frames.some((f) => f.command === 'MESSAGE'), 'both instances consumed');
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
