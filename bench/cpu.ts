// Where the benchmark's processes run and how much CPU they use: the broker and the load
// generator each get a core of their own when there are two, so that neither measures the
// other's work; CPU time tells afterwards which of the two was the bottleneck.
//
// Linux only (taskset, /proc); elsewhere pinning is skipped and broker CPU is unknown.

import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';

let clockTicksPerSecond: number | undefined;

function ticksPerSecond(): number {
  if (clockTicksPerSecond === undefined) {
    try {
      clockTicksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicksPerSecond = 100;
    }
  }
  return clockTicksPerSecond;
}

/** User + system CPU seconds of a process (all its threads), or undefined if unreadable. */
export function processCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces; fields after it are plain numbers.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 14 and 15 of stat (utime, stime) are at 11 and 12 after the name.
    return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond();
  } catch {
    return undefined;
  }
}

/** This process's user + system CPU seconds. */
export function ownCpuSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}

/** Whether both a spare core and taskset are there. */
export function canPin(): boolean {
  if (os.availableParallelism() < 2) return false;
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Pin every thread of `pid` to `cpu`; false when it could not be done. */
export function pinProcess(pid: number, cpu: number): boolean {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * Pin every thread of an external process to `cpu`, remembering each thread's own mask
 * (RabbitMQ binds its schedulers one per core); the returned function puts them back.
 * undefined when it could not be done.
 */
export function pinThreadsUntilRestored(pid: number, cpu: number): (() => void) | undefined {
  const saved: [string, string][] = [];
  try {
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      const output = execFileSync('taskset', ['-p', tid], { encoding: 'utf8' });
      const mask = /:\s*([0-9a-fA-F,]+)\s*$/.exec(output)?.[1];
      if (mask === undefined) throw new Error(`unexpected taskset output: ${output}`);
      saved.push([tid, mask]);
    }
    for (const [tid] of saved) execFileSync('taskset', ['-p', '-c', String(cpu), tid], { stdio: 'ignore' });
  } catch {
    restore(saved);
    return undefined;
  }
  return () => restore(saved);
}

function restore(saved: readonly [string, string][]): void {
  for (const [tid, mask] of saved) {
    try {
      execFileSync('taskset', ['-p', mask, tid], { stdio: 'ignore' });
    } catch {
      // The thread is gone: nothing to put back.
    }
  }
}
