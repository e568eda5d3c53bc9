// `npm run test:faults [-- --schedules N] [-- --seed S] [-- --base B]`: the fault suite's
// schedules (bench/fault-schedules.ts), with the schedule count or seed passed through the
// environment, all in one node:test file (npm test deals its 30 over five files). It
// lives in bench/, not test/: the test runner takes every .js under dist/test/ for a test file.

import { spawnSync } from 'node:child_process';
import path from 'node:path';

const args = process.argv.slice(2);
const env: Record<string, string> = { ...process.env } as Record<string, string>;
for (let i = 0; i < args.length; i++) {
  const value = args[i + 1];
  const needValue = (): string => {
    if (value === undefined) throw new Error(`${args[i]} needs a value`);
    i++;
    return value;
  };
  switch (args[i]) {
    case '--schedules':
      env.FAULT_SCHEDULES = String(Number.parseInt(needValue(), 10));
      break;
    case '--seed':
      env.FAULT_SEED = needValue();
      break;
    case '--base':
      env.FAULT_BASE_SEED = needValue();
      break;
    default:
      process.stderr.write(`usage: npm run test:faults -- [--schedules N] [--seed S] [--base B]\n`);
      process.exit(2);
  }
}
// More than `npm test`'s 30 unless told.
env.FAULT_SCHEDULES ??= '50';
const schedules = Number(env.FAULT_SCHEDULES);
// One file takes every schedule; each test sets its own timeout.
env.FAULT_SHARDS = '1';
const file = path.join(__dirname, 'fault-schedules.js');
const result = spawnSync(process.execPath, ['--test', file], { env, stdio: 'inherit', timeout: (schedules + 5) * 60_000 });
process.exit(result.status ?? 1);
