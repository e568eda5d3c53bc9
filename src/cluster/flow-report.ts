// Flow control's word between instances, on the flow channel every instance hears: "messages
// for these destinations wait here, for this many subscribers each" (an empty list: nothing
// waits any more), from `origin`, believed for `ttlMs` unless renewed. This file is the one
// codec of the format; what arrives is validated like client input, and a report with any
// field wrong is dropped whole.

export interface FlowReport {
  origin: string;
  ttlMs: number;
  waiting: ReadonlyMap<string, number>;
}

/** No report is believed longer than this, whatever its sender says. */
export const MAX_FLOW_REPORT_TTL_MS = 60_000;

export function encodeFlowReport(report: FlowReport): Buffer {
  return Buffer.from(JSON.stringify({ origin: report.origin, ttlMs: report.ttlMs, waiting: [...report.waiting] }));
}

/** The report in `bytes`, or undefined if it is not one. */
export function decodeFlowReport(bytes: Buffer): FlowReport | undefined {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString());
  } catch {
    return undefined;
  }
  const { origin, ttlMs, waiting } = (value ?? {}) as { origin?: unknown; ttlMs?: unknown; waiting?: unknown };
  const isValid =
    typeof origin === 'string' &&
    typeof ttlMs === 'number' &&
    ttlMs > 0 &&
    Array.isArray(waiting) &&
    waiting.every((entry) => Array.isArray(entry) && entry.length === 2 && typeof entry[0] === 'string' && typeof entry[1] === 'number' && Number.isFinite(entry[1]) && entry[1] >= 0);
  if (!isValid) return undefined;
  return { origin, ttlMs: Math.min(ttlMs, MAX_FLOW_REPORT_TTL_MS), waiting: new Map(waiting as [string, number][]) };
}
