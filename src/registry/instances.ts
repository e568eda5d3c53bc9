// The broker's instances as the HTTP API and the dashboard see them: each one's own report
// (its running totals, whether it is cut off from Redis) and its liveness. Embedded mode has
// one instance, read live; with Redis each instance publishes its report with every liveness
// heart-beat (src/cluster/membership.ts), so every instance lists the same instances.
// Rates are for the reader to compute, from two readings of the running totals.

/** One instance's running totals since it started, and its gauges now. */
export interface InstanceCounters {
  /** Open connections (connected or not yet). */
  connections: number;
  /** Connected STOMP sessions. */
  sessions: number;
  /** By destination kind: topic, queue, user. */
  published: Record<string, number>;
  delivered: Record<string, number>;
  dropped: Record<string, number>;
  /** ERROR frames sent, by code. */
  errors: Record<string, number>;
  bytesIn: number;
  heartbeatTimeouts: number;
}

export interface InstanceReport {
  instanceId: string;
  /** Epoch ms. */
  startedAt: number;
  /** Epoch ms when the report was made. */
  reportedAt: number;
  /** Cut off from Redis, by its own account (always false in embedded mode). */
  isDegraded: boolean;
  degradedReason: string | null;
  counters: InstanceCounters;
}

export interface InstanceView extends InstanceReport {
  /** The instance that answered. */
  isSelf: boolean;
  /** Its liveness key exists (embedded: always). An instance not alive is reaped shortly. */
  isAlive: boolean;
  /** How long ago it last refreshed its liveness (its report is that old); 0 for itself. */
  heartbeatAgeMs: number;
}

export interface InstanceDirectory {
  /** Every instance, this one first. */
  instances(): Promise<InstanceView[]>;
}

/** One process, nothing shared: the only instance is this one. */
export function singleInstance(report: () => InstanceReport): InstanceDirectory {
  return { instances: async () => [{ ...report(), isSelf: true, isAlive: true, heartbeatAgeMs: 0 }] };
}

export const NO_COUNTERS: InstanceCounters = { connections: 0, sessions: 0, published: {}, delivered: {}, dropped: {}, errors: {}, bytesIn: 0, heartbeatTimeouts: 0 };
