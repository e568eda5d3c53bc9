// The Lua scripts of the cluster layer are files (src/cluster/lua/*.lua), each opening with
// its KEYS/ARGV contract, so they can be read, reviewed and tested on their own; a format
// several scripts share is one file in lua/include/, pulled in by `--!include <name>`. This
// is the one way they are loaded and called: defined once per connection as an ioredis
// command (EVALSHA with the EVAL fallback after a Redis restart), keys counted per call so
// a script may take optional keys (a key that only exists on a single Redis).

import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { LoadAdaptiveWindow } from '../load-window';
import type { RedisConnection } from './redis-client';

/** Where the .lua files are: beside this file (the build copies them into dist/src/cluster/lua), or in src/ for a build that did not. */
function luaDirectory(): string {
  const beside = path.join(__dirname, 'lua');
  if (fs.existsSync(beside)) return beside;
  return path.join(__dirname, '..', '..', '..', 'src', 'cluster', 'lua');
}

const sources = new Map<string, string>();

/** A line `--!include <part>`: replaced by `src/cluster/lua/include/<part>.lua` (Redis has no require). */
const INCLUDE_LINE = /^--!include ([a-z0-9-]+)$/gm;

/**
 * The source of `src/cluster/lua/<name>.lua` (read once), its include lines replaced by the
 * shared parts they name: a format several scripts read or write is written once.
 */
export function luaSource(name: string): string {
  let source = sources.get(name);
  if (source === undefined) {
    const directory = luaDirectory();
    source = fs.readFileSync(path.join(directory, `${name}.lua`), 'utf8').replace(INCLUDE_LINE, (_line, part: string) => fs.readFileSync(path.join(directory, 'include', `${part}.lua`), 'utf8'));
    sources.set(name, source);
  }
  return source;
}

/**
 * Script calls that may wait go out together at most once per window: the first after a quiet
 * window at once, later ones gathered until the window since it has passed, then issued in one
 * go, so that ioredis's auto-pipeline writes them to Redis in one system call. Only calls from
 * independent callers may wait (LuaScript.runGathered: a CONNECT's registration, one per
 * event-loop turn under a flood of logins, each of which cost a write of its own): a caller
 * that awaits one call before making the next would be held to one call per window. The window
 * is `windowMs` while the event loop has time to spare and widens up to `maxWindowMs` while it
 * is saturated (src/load-window.ts). windowMs 0: every call at once.
 */
export const scriptBatching = {
  windowMs: 1,
  maxWindowMs: 4,
  issue<T>(send: () => Promise<T>): Promise<T> {
    const now = performance.now();
    const windowMs = this.windowMs <= 0 ? 0 : scriptWindow.at(now, this.windowMs, this.maxWindowMs);
    if (windowMs <= 0 || (gathered.length === 0 && now - lastIssuedAt >= windowMs)) {
      lastIssuedAt = now;
      return send();
    }
    return new Promise<T>((resolve, reject) => {
      gathered.push(() => {
        // A send that throws at once (not a rejection) fails its caller, not the others of the batch.
        Promise.resolve().then(send).then(resolve, reject);
      });
      if (gathered.length === 1) setTimeout(issueGathered, Math.max(0, lastIssuedAt + windowMs - now));
    });
  },
};
const scriptWindow = new LoadAdaptiveWindow();
let lastIssuedAt = -Infinity;
let gathered: (() => void)[] = [];

function issueGathered(): void {
  const calls = gathered;
  gathered = [];
  lastIssuedAt = performance.now();
  for (const call of calls) call();
}

type Call = (...args: (string | number | Buffer)[]) => Promise<unknown>;

/**
 * A script bound to one connection: `run(keys, args)`. It is defined as an ioredis command
 * for each number of keys it may be called with (`keyCounts`), at once: ioredis routes and
 * pipelines a command by its keys on a Cluster only when it knows how many there are, and
 * an auto-pipeline made before a late definition would not know the command. ioredis sends a
 * script as EVAL the first time on each socket and as EVALSHA after, so calls keep their order
 * on a connection even right after Redis restarted empty.
 */
export class LuaScript {
  private readonly calls = new Map<number, { text: Call; buffers: Call }>();
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
    const call = this.callFor(keys.length);
    return call === undefined ? Promise.reject(this.undefinedFor(keys.length)) : call.text(...keys, ...args);
  }

  /** As run, with every string in the reply as a Buffer (for binary payloads). */
  runForBuffers(keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<unknown> {
    const call = this.callFor(keys.length);
    return call === undefined ? Promise.reject(this.undefinedFor(keys.length)) : call.buffers(...keys, ...args);
  }

  /** As run, for a caller that does not wait on an earlier call of its own: may be gathered with others (scriptBatching). */
  runGathered(keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<unknown> {
    return scriptBatching.issue(() => this.run(keys, args));
  }

  private undefinedFor(numberOfKeys: number): Error {
    return new Error(`script ${this.name} is not defined for ${numberOfKeys} keys`);
  }

  private callFor(numberOfKeys: number): { text: Call; buffers: Call } | undefined {
    let call = this.calls.get(numberOfKeys);
    if (call === undefined) {
      if (this.calls.size > 0 && !this.isDefining) return undefined;
      const command = `stompd_${this.name.replace(/[^a-z0-9]/gi, '_')}_${numberOfKeys}`;
      const commands = this.redis as unknown as Record<string, Call | undefined>;
      if (commands[command] === undefined) this.redis.defineCommand(command, { numberOfKeys, lua: luaSource(this.name) });
      // ioredis defines `<command>Buffer` beside every command it defines. Looked up at each
      // call, not bound once: a test may stand a failing command in for a script.
      call = { text: (...args) => (commands[command] as Call).apply(this.redis, args), buffers: (...args) => (commands[`${command}Buffer`] as Call).apply(this.redis, args) };
      this.calls.set(numberOfKeys, call);
    }
    return call;
  }
}
