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
  /** This instance alone, read live: what it can say of itself while Redis cannot be read. */
  self(): InstanceView;
}

/** One process, nothing shared: the only instance is this one. */
export function singleInstance(report: () => InstanceReport): InstanceDirectory {
  const self = (): InstanceView => ({ ...report(), isSelf: true, isAlive: true, heartbeatAgeMs: 0 });
  return { instances: async () => [self()], self };
}

export const NO_COUNTERS: InstanceCounters = { connections: 0, sessions: 0, published: {}, delivered: {}, dropped: {}, errors: {}, bytesIn: 0, heartbeatTimeouts: 0 };

/** An instance's report as it is kept for the others to read (with Redis: `instance:{id}:report`). */
export function encodeInstanceReport(report: InstanceReport): string {
  return JSON.stringify(report);
}

/**
 * Another instance's report read back, checked like input: a field missing or of the wrong
 * shape reads as its empty value (no report at all: every field empty), never as something
 * the dashboard cannot show.
 */
export function parseInstanceReport(instanceId: string, json: string | null): InstanceReport {
  let v: Record<string, unknown> = {};
  try {
    const value: unknown = json === null ? {} : JSON.parse(json);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) v = value as Record<string, unknown>;
  } catch {
    v = {};
  }
  return {
    instanceId,
    startedAt: finiteOr0(v.startedAt),
    reportedAt: finiteOr0(v.reportedAt),
    isDegraded: v.isDegraded === true,
    degradedReason: typeof v.degradedReason === 'string' ? v.degradedReason : null,
    counters: parseCounters(v.counters),
  };
}

function finiteOr0(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : 0;
}

function countsOf(value: unknown): Record<string, number> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return {};
  const counts: Record<string, number> = {};
  for (const [key, count] of Object.entries(value)) if (typeof count === 'number' && Number.isFinite(count)) counts[key] = count;
  return counts;
}

function parseCounters(value: unknown): InstanceCounters {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return NO_COUNTERS;
  const c = value as Record<string, unknown>;
  return {
    connections: finiteOr0(c.connections),
    sessions: finiteOr0(c.sessions),
    published: countsOf(c.published),
    delivered: countsOf(c.delivered),
    dropped: countsOf(c.dropped),
    errors: countsOf(c.errors),
    bytesIn: finiteOr0(c.bytesIn),
    heartbeatTimeouts: finiteOr0(c.heartbeatTimeouts),
  };
}
