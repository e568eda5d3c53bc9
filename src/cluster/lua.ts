// The Lua scripts of the cluster layer are files (src/cluster/lua/*.lua), each opening with
// its KEYS/ARGV contract, so they can be read, reviewed and tested on their own. This is
// the one way they are loaded and called: defined once per connection as an ioredis
// command (EVALSHA with the EVAL fallback after a Redis restart), keys counted per call so
// a script may take optional keys (a key that only exists on a single Redis).
//
// Logic two scripts share lives once, in a library file (src/cluster/lua/lib/<name>.lua,
// functions only, its header saying what it expects of the including script): a line
// `--! include <name>` in a script is replaced by that file when the script is loaded (Redis
// runs one chunk; there is no require).

import fs from 'node:fs';
import path from 'node:path';
import type { RedisConnection } from './redis-client';

/** Where the .lua files are: beside this file (the build copies them into dist/src/cluster/lua), or in src/ for a build that did not. */
function luaDirectory(): string {
  const beside = path.join(__dirname, 'lua');
  if (fs.existsSync(beside)) return beside;
  return path.join(__dirname, '..', '..', '..', 'src', 'cluster', 'lua');
}

const sources = new Map<string, string>();

const INCLUDE = /^--! include ([a-z0-9-]+)$/gm;

/** The source of `src/cluster/lua/<name>.lua` (read once), its includes in place. */
export function luaSource(name: string): string {
  let source = sources.get(name);
  if (source === undefined) {
    source = fs.readFileSync(path.join(luaDirectory(), `${name}.lua`), 'utf8').replace(INCLUDE, (_, library: string) => {
      if (name.startsWith('lib/')) throw new Error(`${name}.lua: a library does not include another (${library})`);
      return luaSource(`lib/${library}`).trimEnd();
    });
    sources.set(name, source);
  }
  return source;
}

type Call = (...args: (string | number | Buffer)[]) => Promise<unknown>;
interface Calls {
  /** Replies as strings. */
  text: Call;
  /** Replies as Buffers (binary-safe bulk strings). */
  bytes: Call;
}

/**
 * A script bound to one connection: `run(keys, args)`. It is defined as an ioredis command
 * for each number of keys it may be called with (`keyCounts`), at once: ioredis routes and
 * pipelines a command by its keys on a Cluster only when it knows how many there are, and
 * an auto-pipeline made before a late definition would not know the command.
 */
export class LuaScript {
  private readonly calls = new Map<number, Calls>();
  private isDefining = true;

  constructor(
    private readonly redis: RedisConnection,
    readonly name: string,
    keyCounts: readonly number[],
  ) {
    for (const count of keyCounts) this.callFor(count);
    this.isDefining = false;
  }

  run(keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<unknown> {
    return this.callFor(keys.length).text(...keys, ...args);
  }

  /** Like run, with bulk-string replies as Buffers (a script returning binary data). */
  runBuffer(keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<unknown> {
    return this.callFor(keys.length).bytes(...keys, ...args);
  }

  private callFor(numberOfKeys: number): Calls {
    let calls = this.calls.get(numberOfKeys);
    if (calls === undefined) {
      if (this.calls.size > 0 && !this.isDefining) throw new Error(`script ${this.name} is not defined for ${numberOfKeys} keys`);
      const command = `stompd_${this.name.replace(/[^a-z0-9]/gi, '_')}_${numberOfKeys}`;
      const commands = this.redis as unknown as Record<string, Call | undefined>;
      if (commands[command] === undefined) this.redis.defineCommand(command, { numberOfKeys, lua: luaSource(this.name) });
      // Looked up at each call, not bound once: a test may stand a failing command in for it.
      calls = { text: (...args) => (commands[command] as Call).apply(this.redis, args), bytes: (...args) => (commands[`${command}Buffer`] as Call).apply(this.redis, args) };
      this.calls.set(numberOfKeys, calls);
    }
    return calls;
  }
}
