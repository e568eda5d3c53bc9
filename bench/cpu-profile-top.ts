// Where a process's time went, from a V8 CPU profile (.cpuprofile, as `node --cpu-prof` or
// bench/anchor --profile write it): self time per function and per source file, largest first.
//
//   node dist/bench/cpu-profile-top.js PROFILE.cpuprofile [--top 25]
//
// Self time is a function's own samples (not its callees'), each sample counted for the time
// until the next one. "(idle)" is time the event loop waited; the shares are also given out of
// the busy time (everything but idle), which is what a CPU-per-delivery figure is made of.

import { readFileSync } from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

interface Entry {
  name: string;
  micros: number;
}

/** A short place for a script URL: node:… as it is, ours and node_modules' from their package root. */
function place(url: string): string {
  if (url === '') return '';
  const file = url.startsWith('file://') ? url.slice('file://'.length) : url;
  const modules = file.lastIndexOf('/node_modules/');
  if (modules !== -1) return file.slice(modules + '/node_modules/'.length);
  const dist = file.lastIndexOf('/dist/');
  if (dist !== -1) return file.slice(dist + '/dist/'.length);
  return file.startsWith('node:') ? file : path.basename(file);
}

export function summarizeProfile(profile: CpuProfile): { totalMicros: number; idleMicros: number; functions: Entry[]; files: Entry[] } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const selfMicros = new Map<number, number>();
  const { samples, timeDeltas } = profile;
  const average = timeDeltas.length > 1 ? timeDeltas.slice(1).reduce((a, b) => a + b, 0) / (timeDeltas.length - 1) : 0;
  for (let i = 0; i < samples.length; i++) {
    const micros = i + 1 < timeDeltas.length ? timeDeltas[i + 1]! : average;
    selfMicros.set(samples[i]!, (selfMicros.get(samples[i]!) ?? 0) + micros);
  }
  const functions = new Map<string, number>();
  const files = new Map<string, number>();
  let totalMicros = 0;
  let idleMicros = 0;
  for (const [id, micros] of selfMicros) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    totalMicros += micros;
    if (functionName === '(idle)') idleMicros += micros;
    const where = place(url);
    const name = where === '' ? functionName || '(anonymous)' : `${functionName || '(anonymous)'} ${where}:${lineNumber + 1}`;
    functions.set(name, (functions.get(name) ?? 0) + micros);
    const file = where === '' ? functionName : where;
    files.set(file, (files.get(file) ?? 0) + micros);
  }
  const sorted = (map: Map<string, number>): Entry[] => [...map].map(([name, micros]) => ({ name, micros })).sort((a, b) => b.micros - a.micros);
  return { totalMicros, idleMicros, functions: sorted(functions), files: sorted(files) };
}

function main(): void {
  const [file, ...rest] = process.argv.slice(2);
  if (file === undefined || file === '--help') {
    process.stdout.write('Usage: node dist/bench/cpu-profile-top.js PROFILE.cpuprofile [--top N]\n');
    process.exit(file === undefined ? 64 : 0);
  }
  const top = rest[0] === '--top' && rest[1] !== undefined ? Number(rest[1]) : 25;
  const { totalMicros, idleMicros, functions, files } = summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile);
  const busy = totalMicros - idleMicros;
  const line = (entry: Entry): string =>
    `${(entry.micros / 1000).toFixed(1).padStart(9)} ms ${((entry.micros / totalMicros) * 100).toFixed(1).padStart(5)} % ${entry.name === '(idle)' ? '      ' : `${((entry.micros / busy) * 100).toFixed(1).padStart(5)} %`}  ${entry.name}`;
  process.stdout.write(`${file}: ${(totalMicros / 1000).toFixed(0)} ms sampled, ${(busy / 1000).toFixed(0)} ms busy (not idle)\n`);
  process.stdout.write(`\nself time by function (of all, of busy):\n${functions.slice(0, top).map(line).join('\n')}\n`);
  process.stdout.write(`\nself time by file:\n${files.slice(0, top).map(line).join('\n')}\n`);
}

if (require.main === module) main();
