// How much memory the broker holds: its resident set at the end of a run and its peak, read
// from /proc. A broker that copies each message per subscriber shows it here first.
//
// Linux only; elsewhere (or for a process that is gone) the answer is undefined.

import { readFileSync } from 'node:fs';

export interface ProcessMemory {
  rssMiB: number;
  /** High-water mark of the resident set over the process's life (VmHWM). */
  peakRssMiB: number;
}

/** The resident set of `pid` now and at its peak, in MiB. */
export function processMemory(pid: number): ProcessMemory | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rssKiB = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
    const peakKiB = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
    if (rssKiB === undefined || peakKiB === undefined) return undefined;
    return { rssMiB: Math.round(Number(rssKiB) / 1024), peakRssMiB: Math.round(Number(peakKiB) / 1024) };
  } catch {
    return undefined;
  }
}
