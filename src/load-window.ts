// A wait that adapts to load, for batching work that costs per call more than per item (a
// system call per write, a Redis round trip per command): short while the event loop has
// time to spare, so an idle broker keeps its latency; doubling while the loop is saturated,
// so a busy one spends less of it on per-call overhead.
//
// Invariants: the window stays within [floor, ceiling] as the caller gives them at each call
// (a ceiling not above the floor: the floor, fixed); it is adjusted at most every
// ADJUST_EVERY_MS, from the event loop's utilization since the previous adjustment: doubled at
// BUSY_UTILIZATION or more, halved below IDLE_UTILIZATION, kept in between.

import { performance } from 'node:perf_hooks';
import type { EventLoopUtilization } from 'node:perf_hooks';

const ADJUST_EVERY_MS = 20;
const BUSY_UTILIZATION = 0.6;
const IDLE_UTILIZATION = 0.3;

export class LoadAdaptiveWindow {
  private currentMs = 0;
  private lastAdjustedAt = 0;
  private lastUtilization: EventLoopUtilization | undefined;

  /** The window now in force (ms), `now` from performance.now(). */
  at(now: number, floorMs: number, ceilingMs: number): number {
    const ceiling = Math.max(floorMs, ceilingMs);
    if (this.currentMs < floorMs || this.currentMs > ceiling) this.currentMs = floorMs;
    if (ceiling > floorMs && now - this.lastAdjustedAt >= ADJUST_EVERY_MS) {
      const total = performance.eventLoopUtilization();
      const utilization = this.lastUtilization === undefined ? 0 : performance.eventLoopUtilization(total, this.lastUtilization).utilization;
      this.lastUtilization = total;
      this.lastAdjustedAt = now;
      if (utilization >= BUSY_UTILIZATION) this.currentMs = Math.min(ceiling, this.currentMs * 2);
      else if (utilization < IDLE_UTILIZATION) this.currentMs = Math.max(floorMs, this.currentMs / 2);
    }
    return this.currentMs;
  }
}
