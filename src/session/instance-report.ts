// This instance's own report, as GET /api/instances and the dashboard list it: its running
// totals since it started (from the router and the sessions' counters) and its gauges now.
// With Redis each instance publishes it with every liveness heart-beat (membership.ts), so
// every instance lists the others'; the cluster layer adds whether it is degraded.

import type { KindCounts, RouterStats } from '../broker/router';
import type { InstanceReport } from '../registry/instances';
import type { SessionCounters } from './counters';
import type { Session } from './session';

export interface ReportSources {
  instanceId: string;
  /** Sessions open now, connected or not yet. */
  sessions(): Iterable<Session>;
  router: { readonly published: KindCounts; readonly delivered: KindCounts; readonly dropped: KindCounts; stats(): RouterStats };
  counters: SessionCounters;
}

/** A function that makes the report now; the instance's start is the time it was made. */
export function instanceReporter(sources: ReportSources): () => InstanceReport {
  const startedAt = Date.now();
  const { router, counters } = sources;
  return () => {
    let connections = 0;
    let sessions = 0;
    for (const session of sources.sessions()) {
      connections++;
      if (session.state === 'connected') sessions++;
    }
    const stats = router.stats();
    return {
      instanceId: sources.instanceId,
      startedAt,
      reportedAt: Date.now(),
      isDegraded: false, // the cluster layer says when it is
      degradedReason: null,
      counters: {
        connections,
        sessions,
        published: { ...router.published },
        delivered: { topic: router.delivered.topic, queue: stats.deliveredFromQueues, user: router.delivered.user },
        dropped: { topic: router.dropped.topic, queue: stats.droppedFromQueues, user: router.dropped.user },
        errors: { ...counters.errorsSent },
        bytesIn: counters.bytesIn,
        heartbeatTimeouts: counters.heartbeatTimeouts,
      },
    };
  };
}
