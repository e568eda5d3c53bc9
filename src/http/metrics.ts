// Prometheus metrics (prom-client), read from plain integers when scraped: the sessions and
// the router only add to counters of their own (SessionCounters, Router.published/…), and
// every metric here copies them in its collect(). Nothing is called per frame or per message.
// One prom-client Registry per broker, so that several brokers in one process stay apart.

import type { QueueStat } from '../broker/queue-backend';
import type { FlowStats } from '../broker/flow';
import type { RemoteFanOutStats } from '../broker/remote-fanout';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { KindCounts, RouterStats } from '../broker/router';
import type { SessionCounters } from '../session/counters';

/** A local connection as the metrics see it. */
export interface ConnectionView {
  readonly transport: string;
  readonly state: string;
  readonly userId: string;
  readonly connection: { readonly bytesWritten: number };
}

/** What the Redis layer reports, when there is one. */
export interface ClusterMetricsView {
  isDegraded: boolean;
  reconnects: number;
  redisLatency: { lastMs: number; sumMs: number; count: number };
  relay: { published: number; dropped: number; received: number };
}

/** What the backend hooks report, when BACKEND_URL is set. */
export interface BackendMetricsView {
  calls: {
    /** hook → result → calls. */
    calls: Record<string, Record<string, number>>;
    observeLatency: ((hook: string, seconds: number) => void) | undefined;
  };
  errors: Record<string, number>;
  pendingEvents: number;
  droppedEvents: number;
  eventRetries: number;
}

export interface MetricsSources {
  /** undefined without BACKEND_URL: no hook metrics then. */
  backend?: () => BackendMetricsView;
  connections(): Iterable<ConnectionView>;
  sessionCounters: SessionCounters;
  router: { readonly published: KindCounts; readonly delivered: KindCounts; readonly dropped: KindCounts; stats(): RouterStats; readonly remoteStats: RemoteFanOutStats };
  /** undefined with FLOW_CONTROL=off: no flow-control metrics then. */
  flow?: () => FlowStats;
  /** undefined in embedded mode: no Redis metrics then. */
  cluster(): ClusterMetricsView | undefined;
  /** Per-queue figures (from Redis with several instances), read at scrape time. */
  queues: { queueStats(): Promise<QueueStat[]> };
  /** Queues given series of their own (the deepest; METRICS_QUEUE_SERIES); 0: none, totals only. */
  queueSeries: number;
}

/**
 * The `limit` queues a scrape shows one by one: the deepest, then the most unacknowledged,
 * then by name (stable between scrapes). A series per queue for every queue would let any
 * client that may create queues grow each scrape without bound (3,000 queues: 3 MB).
 */
function deepestQueues(stats: readonly QueueStat[], limit: number): QueueStat[] {
  if (limit <= 0) return [];
  return [...stats].sort((a, b) => b.depth - a.depth || b.unacked - a.unacked || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).slice(0, limit);
}

/** A counter whose value is a source's running total. */
function mirrorCounter(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** A counter per label value, read from a record of running totals. */
function mirrorLabelledCounter(registry: Registry, name: string, help: string, label: string, read: () => Record<string, number>): void {
  new Counter({
    name,
    help,
    labelNames: [label],
    registers: [registry],
    collect() {
      this.reset();
      for (const [value, count] of Object.entries(read())) this.inc({ [label]: value }, count);
    },
  });
}

export function createMetrics(sources: MetricsSources): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry }); // process and Node.js metrics, event-loop lag among them
  const { sessionCounters: counters, router } = sources;

  new Gauge({
    name: 'stompd_connections',
    help: 'Open connections on this instance, by transport (connected or not yet)',
    labelNames: ['transport'],
    registers: [registry],
    collect() {
      const byTransport: Record<string, number> = { tcp: 0, ws: 0 };
      for (const c of sources.connections()) byTransport[c.transport] = (byTransport[c.transport] ?? 0) + 1;
      this.reset();
      for (const [transport, count] of Object.entries(byTransport)) this.set({ transport }, count);
    },
  });
  new Gauge({
    name: 'stompd_sessions',
    help: 'Connected STOMP sessions on this instance',
    registers: [registry],
    collect() {
      let connected = 0;
      for (const c of sources.connections()) if (c.state === 'connected') connected++;
      this.set(connected);
    },
  });
  new Gauge({
    name: 'stompd_online_users',
    help: 'Distinct users with a connected session on this instance',
    registers: [registry],
    collect() {
      const users = new Set<string>();
      for (const c of sources.connections()) if (c.state === 'connected') users.add(c.userId);
      this.set(users.size);
    },
  });
  mirrorLabelledCounter(registry, 'stompd_frames_in_total', 'Frames received, by command', 'command', () => counters.framesIn);
  mirrorLabelledCounter(registry, 'stompd_frames_out_total', 'Frames sent, by command (MESSAGE: every delivery)', 'command', () => {
    const stats = router.stats();
    return { ...counters.framesOut, MESSAGE: router.delivered.topic + router.delivered.user + stats.deliveredFromQueues };
  });
  mirrorLabelledCounter(registry, 'stompd_messages_published_total', 'Messages published on this instance, by destination kind', 'kind', () => ({ ...router.published }));
  mirrorLabelledCounter(registry, 'stompd_messages_delivered_total', 'MESSAGE frames written to subscribers, by destination kind', 'kind', () => ({
    topic: router.delivered.topic,
    user: router.delivered.user,
    queue: router.stats().deliveredFromQueues,
  }));
  mirrorLabelledCounter(registry, 'stompd_messages_dropped_total', 'Messages dropped: topic/user ones a slow subscriber could not take, queue ones past MAX_QUEUE_MESSAGES', 'kind', () => ({
    topic: router.dropped.topic,
    user: router.dropped.user,
    queue: router.stats().droppedFromQueues,
  }));
  mirrorCounter(registry, 'stompd_bytes_in_total', 'Bytes read from STOMP connections', () => counters.bytesIn);
  mirrorCounter(registry, 'stompd_bytes_out_total', 'Bytes written to STOMP connections', () => {
    let bytes = counters.bytesOutOfClosed;
    for (const c of sources.connections()) bytes += c.connection.bytesWritten;
    return bytes;
  });
  mirrorCounter(registry, 'stompd_heartbeat_timeouts_total', 'Sessions closed because the client fell silent past the heart-beat bound', () => counters.heartbeatTimeouts);
  mirrorLabelledCounter(registry, 'stompd_errors_sent_total', 'ERROR frames sent (refusals and closes), by code', 'code', () => counters.errorsSent);
  mirrorCounter(registry, 'stompd_slow_consumer_events_total', 'Messages not written to a session over its write limit, and sessions closed for it', () => counters.slowConsumerEvents);

  if (sources.flow !== undefined) {
    const flow = sources.flow;
    new Gauge({
      name: 'stompd_flow_held_publishers',
      help: "Publishers held back right now because most subscribers of their messages are behind (the fan-out of other instances' messages counts as one)",
      registers: [registry],
      collect() {
        this.set(flow().heldNow);
      },
    });
    mirrorCounter(registry, 'stompd_flow_holds_total', 'Times a publisher was held back (flow control)', () => flow().holds);
    mirrorCounter(registry, 'stompd_flow_held_seconds_total', 'Time publishers spent held back, over the holds that ended', () => flow().heldMs / 1000);
    mirrorCounter(registry, 'stompd_flow_hold_timeouts_total', 'Holds that ended at FLOW_CONTROL_MAX_HOLD_MS rather than because subscribers drained', () => flow().releasedByTimeout);
    new Gauge({
      name: 'stompd_flow_stalled_subscribers',
      help: 'Behind subscribers that took nothing for FLOW_CONTROL_STALL_MS: they hold no publisher back, the slow-consumer policy applies to them',
      registers: [registry],
      collect() {
        this.set(flow().stalledNow);
      },
    });
    mirrorCounter(registry, 'stompd_flow_stalls_total', 'Subscribers found stalled (flow control stopped waiting for them)', () => flow().stalls);
  }
  if (sources.cluster() !== undefined) {
    const cluster = (): ClusterMetricsView => sources.cluster()!;
    new Gauge({
      name: 'stompd_redis_degraded',
      help: '1 while Redis is unreachable (local delivery goes on), else 0',
      registers: [registry],
      collect() {
        this.set(cluster().isDegraded ? 1 : 0);
      },
    });
    mirrorCounter(registry, 'stompd_redis_reconnects_total', 'Connections to Redis made again after a loss', () => cluster().reconnects);
    new Gauge({
      name: 'stompd_redis_command_latency_seconds',
      help: 'Round trip of the latest PING (one per instance heart-beat)',
      registers: [registry],
      collect() {
        this.set(cluster().redisLatency.lastMs / 1000);
      },
    });
    mirrorCounter(registry, 'stompd_redis_ping_seconds_total', 'Sum of the PING round trips (divide by stompd_redis_pings_total for the mean)', () => cluster().redisLatency.sumMs / 1000);
    mirrorCounter(registry, 'stompd_redis_pings_total', 'PINGs answered', () => cluster().redisLatency.count);
    new Gauge({
      name: 'stompd_relay_backlog_bytes',
      help: "Other instances' messages waiting here for their fan-out (their subscribers are behind, or this instance is busy), in bytes",
      registers: [registry],
      collect() {
        this.set(router.remoteStats.waitingBytes);
      },
    });
    new Gauge({
      name: 'stompd_relay_backlog_messages',
      help: "Other instances' messages waiting here for their fan-out",
      registers: [registry],
      collect() {
        this.set(router.remoteStats.waitingMessages);
      },
    });
    mirrorCounter(registry, 'stompd_relay_backlog_dropped_total', "Other instances' messages dropped here past RELAY_BACKLOG_BYTES (their subscribers are told with x-dropped)", () => router.remoteStats.dropped);
    mirrorLabelledCounter(registry, 'stompd_relay_messages_total', 'Topic and user messages between instances: published to Redis, received from it, dropped (Redis away)', 'direction', () => {
      const { relay } = cluster();
      return { published: relay.published, received: relay.received, dropped: relay.dropped };
    });
  }
  if (sources.backend !== undefined) {
    const backend = sources.backend;
    new Counter({
      name: 'stompd_backend_calls_total',
      help: 'Calls to the application backend, by hook (send, connect, subscribe, events, refresh) and result (ok, timeout, refused, status, invalid, too-large, error)',
      labelNames: ['hook', 'result'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [hook, byResult] of Object.entries(backend().calls.calls)) for (const [result, count] of Object.entries(byResult)) this.inc({ hook, result }, count);
      },
    });
    const latency = new Histogram({
      name: 'stompd_backend_call_seconds',
      help: 'Duration of calls to the application backend, by hook (waiting for a free slot not included)',
      labelNames: ['hook'],
      buckets: [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
      registers: [registry],
    });
    backend().calls.observeLatency = (hook, seconds) => latency.observe({ hook }, seconds);
    mirrorLabelledCounter(registry, 'stompd_backend_errors_total', "Non-fatal errors told to senders on /user/queue/errors, by code (BACKEND_UNAVAILABLE, the backend's own codes)", 'code', () => backend().errors);
    new Gauge({
      name: 'stompd_backend_pending_events',
      help: "Session events waiting for the backend's /events (this instance's outbox)",
      registers: [registry],
      collect() {
        this.set(backend().pendingEvents);
      },
    });
    mirrorCounter(registry, 'stompd_backend_dropped_events_total', 'Session events dropped, oldest first, past BACKEND_MAX_PENDING_EVENTS', () => backend().droppedEvents);
    mirrorCounter(registry, 'stompd_backend_event_retries_total', 'Calls to /events that failed and were tried again', () => backend().eventRetries);
  }
  // Per queue, read once per scrape and shared by the gauges.
  let scrape: Promise<{ all: QueueStat[]; deepest: QueueStat[] }> | undefined;
  const readQueues = (): Promise<{ all: QueueStat[]; deepest: QueueStat[] }> =>
    (scrape ??= sources.queues
      .queueStats()
      .catch(() => [] as QueueStat[])
      .then((all) => ({ all, deepest: deepestQueues(all, sources.queueSeries) }))
      .finally(() => setImmediate(() => (scrape = undefined))));
  for (const [name, help, read] of [
    ['stompd_queues', 'Queues that exist (on every instance)', (stats: readonly QueueStat[]) => stats.length],
    ['stompd_queues_depth', 'Messages stored in all queues and not handed to a consumer yet', (stats: readonly QueueStat[]) => stats.reduce((sum, q) => sum + q.depth, 0)],
    ['stompd_queues_unacked', 'Queue messages delivered and not acknowledged yet, all queues', (stats: readonly QueueStat[]) => stats.reduce((sum, q) => sum + q.unacked, 0)],
  ] as const) {
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        this.set(read((await readQueues()).all));
      },
    });
  }
  if (sources.queueSeries > 0) {
    for (const [name, help, read] of [
      ['stompd_queue_depth', 'Messages stored in a queue and not handed to a consumer yet (the deepest queues only)', (q: QueueStat) => q.depth],
      ['stompd_queue_unacked', 'Queue messages delivered and not acknowledged yet (the deepest queues only)', (q: QueueStat) => q.unacked],
      ['stompd_queue_consumers', 'Subscriptions consuming a queue, on every instance (the deepest queues only)', (q: QueueStat) => q.consumers],
      ['stompd_queue_oldest_age_seconds', 'Age of the oldest message a queue holds (the deepest queues only)', (q: QueueStat) => q.oldestAgeMs / 1000],
    ] as const) {
      new Gauge({
        name,
        help,
        labelNames: ['queue'],
        registers: [registry],
        async collect() {
          const { deepest } = await readQueues();
          this.reset();
          for (const queue of deepest) this.set({ queue: queue.name }, read(queue));
        },
      });
    }
  }

  return registry;
}
