// Latency samples in microseconds, kept in one preallocated array so that recording on
// the hot path is a store and an increment; percentiles are computed once, at the end.

export interface LatencySummaryMs {
  samples: number;
  p50: number;
  p99: number;
  max: number;
}

export class LatencyRecorder {
  private readonly values: Float64Array;
  private count = 0;
  /** Samples that did not fit: counted, not kept. */
  overflow = 0;

  constructor(capacity: number) {
    this.values = new Float64Array(Math.max(1, capacity));
  }

  record(latencyMicros: number): void {
    if (this.count < this.values.length) this.values[this.count++] = latencyMicros;
    else this.overflow++;
  }

  summaryMs(): LatencySummaryMs {
    return summarizeMicros(this.values.slice(0, this.count));
  }

  /** The samples kept so far (a copy). */
  samples(): Float64Array {
    return this.values.slice(0, this.count);
  }
}

/** Percentiles over the samples of several recorders together. */
export function combinedSummaryMs(recorders: readonly LatencyRecorder[]): LatencySummaryMs {
  const parts = recorders.map((recorder) => recorder.samples());
  const all = new Float64Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    all.set(part, offset);
    offset += part.length;
  }
  return summarizeMicros(all);
}

/** Sorts `values` in place. */
function summarizeMicros(values: Float64Array): LatencySummaryMs {
  const sorted = values.sort();
  const at = (fraction: number): number => {
    if (sorted.length === 0) return 0;
    const index = Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1);
    return round3(sorted[Math.max(0, index)]! / 1000);
  };
  return { samples: sorted.length, p50: at(0.5), p99: at(0.99), max: at(1) };
}

function round3(value: number): number {
  return Math.round(value * 1000) / 1000;
}
