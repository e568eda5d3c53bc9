// The router's queue and topic paths in one process, measured in CPU time: no sockets, no
// second process, so the figure is what the broker's own code costs and a machine shared
// with other work disturbs it far less than wall-clock throughput. To compare two builds,
// point --dist at the other build's dist/ (its Router is loaded from there).
//
//   node dist/bench/queue-path.js [--cases deep,flow,topic] [--runs 5] [--messages 200000]
//                                 [--depth 10000] [--dist /elsewhere/dist]
//
// Cases:
// - deep:  --depth messages stored, one consumer (client-individual, prefetch 1) ACKing them
//          one by one: each ACK hands out the next stored message (cost per ACK vs depth).
// - flow:  --messages admitted, published and ACKed through a queue with 4 consumers
//          (prefetch 100): the embedded SEND → MESSAGE → ACK path.
// - topic: --messages admitted and published to a topic with 10 auto-ack subscribers.
// One JSON line per case: CPU ms of each run (the first, a warm-up, left out) and their median.

import path from 'node:path';
import type { Router as RouterClass } from '../src/broker/router';
import type { Subscription as SubscriptionClass, Subscriber } from '../src/broker/subscription';

interface Options {
  cases: string[];
  runs: number;
  messages: number;
  depth: number;
  dist: string;
}

function parseOptions(argv: string[]): Options {
  const options: Options = { cases: ['deep', 'flow', 'topic'], runs: 5, messages: 200_000, depth: 10_000, dist: path.resolve(__dirname, '..') };
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i]!, argv[i + 1]];
    if (value === undefined) throw new Error(`${name} needs a value`);
    if (name === '--cases') options.cases = value.split(',');
    else if (name === '--runs') options.runs = Number(value);
    else if (name === '--messages') options.messages = Number(value);
    else if (name === '--depth') options.depth = Number(value);
    else if (name === '--dist') options.dist = path.resolve(value);
    else throw new Error(`unknown option ${name}`);
  }
  return options;
}

const options = parseOptions(process.argv.slice(2));
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the build to measure is chosen at run time (--dist, to compare two builds)
const { Router } = require(path.join(options.dist, 'src/broker/router.js')) as { Router: typeof RouterClass };
// eslint-disable-next-line @typescript-eslint/no-require-imports -- from the same run-time build (--dist)
const { Subscription } = require(path.join(options.dist, 'src/broker/subscription.js')) as { Subscription: typeof SubscriptionClass };

const ROUTER_OPTIONS = { maxQueueMessages: 1e9, messageIdPrefix: 'bench', topicPrefix: '/topic/', queuePrefix: '/queue/', userPrefix: '/user/' };
const BODY = Buffer.alloc(100, 'x');

/** A session that writes nowhere and remembers the ack ids it handed out. */
function subscriber(sessionId: string): Subscriber & { ackIds: string[] } {
  const ackIds: string[] = [];
  const nextAckId = (): string => {
    const id = String(ackIds.length + 1);
    ackIds.push(id);
    return id;
  };
  return { sessionId, userId: 'bench', version: '1.2', isWritable: true, isBehind: false, acceptedBytes: 0, isFlowStalled: false, write: () => undefined, nextAckId, onSlowConsumer: () => true, ackIds };
}

function cpuMs(work: () => void): number {
  const before = process.cpuUsage();
  work();
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

const cases: Record<string, () => number> = {
  deep() {
    const router = new Router(ROUTER_OPTIONS);
    for (let i = 0; i < options.depth; i++) void router.publish(router.createMessage('/queue/deep', [], BODY, 'bench'));
    const session = subscriber('deep');
    const subscription = new Subscription(session, '1', '/queue/deep', 'client-individual', 1);
    void router.subscribe(subscription); // a queue: nothing to wait for
    return cpuMs(() => {
      for (let i = 0; i < options.depth; i++) router.ack(subscription, session.ackIds[i]!);
    });
  },
  flow() {
    const router = new Router(ROUTER_OPTIONS);
    const consumers = [0, 1, 2, 3].map((i) => {
      const session = subscriber(`flow-${i}`);
      const subscription = new Subscription(session, '1', '/queue/flow', 'client-individual', 100);
      void router.subscribe(subscription); // a queue: nothing to wait for
      return { session, subscription, acked: 0 };
    });
    return cpuMs(() => {
      for (let i = 0; i < options.messages; i++) {
        const message = router.createMessage('/queue/flow', [], BODY, 'bench');
        if (router.admit([message]) === undefined) void router.publish(message);
        const consumer = consumers[i % consumers.length]!;
        while (consumer.acked < consumer.session.ackIds.length) router.ack(consumer.subscription, consumer.session.ackIds[consumer.acked++]!);
      }
    });
  },
  topic() {
    const router = new Router(ROUTER_OPTIONS);
    for (let i = 0; i < 10; i++) void router.subscribe(new Subscription(subscriber(`topic-${i}`), '1', '/topic/bench', 'auto'));
    return cpuMs(() => {
      for (let i = 0; i < options.messages; i++) {
        const message = router.createMessage('/topic/bench', [], BODY, 'bench');
        if (router.admit([message]) === undefined) void router.publish(message);
      }
    });
  },
};

for (const name of options.cases) {
  const run = cases[name];
  if (run === undefined) throw new Error(`unknown case ${name} (deep, flow, topic)`);
  run(); // warm-up
  const cpu = Array.from({ length: options.runs }, run).map((ms) => Math.round(ms * 10) / 10);
  const sorted = [...cpu].sort((a, b) => a - b);
  process.stdout.write(`${JSON.stringify({ case: name, dist: options.dist, runs: options.runs, cpuMs: cpu, medianCpuMs: sorted[Math.floor(sorted.length / 2)] })}\n`);
}
