// The Lua scripts of the cluster layer are files (src/cluster/lua/*.lua), each opening with
// its KEYS/ARGV contract, so they can be read, reviewed and tested on their own. This is
// the one way they are loaded and called: defined once per connection as an ioredis
// command (EVALSHA with the EVAL fallback after a Redis restart), keys counted per call so
// a script may take optional keys (a key that only exists on a single Redis).

import fs from 'node:fs';
import path from 'node:path';
import type { RedisConnection } from './redis-client';

/** Where the .lua files are: beside this file in src/, and for the built dist/src/cluster/ in ../../../src/cluster/lua. */
function luaDirectory(): string {
  const beside = path.join(__dirname, 'lua');
  if (fs.existsSync(beside)) return beside;
  return path.join(__dirname, '..', '..', '..', 'src', 'cluster', 'lua');
}

const sources = new Map<string, string>();

/** The source of `src/cluster/lua/<name>.lua` (read once). */
export function luaSource(name: string): string {
  let source = sources.get(name);
  if (source === undefined) {
    source = fs.readFileSync(path.join(luaDirectory(), `${name}.lua`), 'utf8');
    sources.set(name, source);
  }
  return source;
}

type Call = (numberOfKeys: number, ...args: (string | number | Buffer)[]) => Promise<unknown>;

/** A script bound to one connection: `run(keys, args)`. */
export class LuaScript {
  private readonly call: Call;

  constructor(redis: RedisConnection, readonly name: string) {
    const command = `stompd_${name.replace(/[^a-z0-9]/gi, '_')}`;
    const commands = redis as unknown as Record<string, Call | undefined>;
    if (commands[command] === undefined) redis.defineCommand(command, { lua: luaSource(name) });
    this.call = (commands[command] as Call).bind(redis);
  }

  run(keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<unknown> {
    return this.call(keys.length, ...keys, ...args);
  }
}
