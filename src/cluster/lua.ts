// The Lua scripts of the cluster layer are files (src/cluster/lua/*.lua), each opening with
// its KEYS/ARGV contract, so they can be read, reviewed and tested on their own; a format
// several scripts share is one file in lua/include/, pulled in by `--!include <name>`. This
// is the one way they are loaded and called: EVALSHA, with the EVAL fallback after a Redis
// restart, keys counted per call so a script may take optional keys (a key that only exists
// on a single Redis).

import { createHash } from 'node:crypto';
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
 * Script calls go out together at most once per window: the first after a quiet window at
 * once, later ones gathered until the window since it has passed, then issued in one go, so
 * that ioredis's auto-pipeline writes them to Redis in one system call. Each call on its own
 * (a CONNECT's registration, one per event-loop turn under a flood of logins) cost a write of
 * its own, the largest single cost of a CONNECT with Redis. The window is `windowMs` while the
 * event loop has time to spare and widens up to `maxWindowMs` while it is saturated
 * (src/load-window.ts): at moderate rates a call waits at most 1 ms, and only while others came
 * within a window before it. windowMs 0: every call at once.
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
      gathered.push(() => void send().then(resolve, reject));
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

type Evaluate = (...args: (string | number | Buffer)[]) => Promise<unknown>;

/** Redis's answer when its script cache lacks the script (a restart, a failover, a new node). */
function isNoScript(error: unknown): boolean {
  return error instanceof Error && error.message.startsWith('NOSCRIPT');
}

/**
 * A script bound to one connection: `run(keys, args)` sends EVALSHA, and EVAL once if the
 * server's script cache lacks it (which loads it there again). Called through the
 * connection's generic `call`, not defined as an ioredis command: ioredis copies every
 * defined command into each pipeline it makes, auto-pipelines included, which with this
 * layer's 28 scripts cost more than the command itself. A Cluster routes and auto-pipelines
 * EVALSHA by its first key, as it would a defined command. `keyCounts`: the key counts the
 * script's contract allows; a call with another count is a bug and throws.
 */
export class LuaScript {
  private readonly source: string;
  private readonly sha: string;

  constructor(
    private readonly redis: RedisConnection,
    readonly name: string,
    private readonly keyCounts: readonly number[],
  ) {
    this.source = luaSource(name);
    this.sha = createHash('sha1').update(this.source).digest('hex');
  }

  run(keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<unknown> {
    return this.evaluate(false, keys, args);
  }

  /** As run, with every string in the reply as a Buffer (for binary payloads). */
  runForBuffers(keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<unknown> {
    return this.evaluate(true, keys, args);
  }

  /**
   * EVALSHA and EVAL as ioredis names them (`…Buffer`: string replies as Buffers). Not
   * `callBuffer`: an auto-pipeline drops the command name of a `callBuffer`.
   */
  private evaluate(buffers: boolean, keys: readonly string[], args: readonly (string | number | Buffer)[]): Promise<unknown> {
    if (!this.keyCounts.includes(keys.length)) return Promise.reject(new Error(`script ${this.name} is not defined for ${keys.length} keys`));
    const commands = this.redis as unknown as Record<'evalsha' | 'eval' | 'evalshaBuffer' | 'evalBuffer', Evaluate>;
    const byHash = buffers ? commands.evalshaBuffer : commands.evalsha;
    const send = (): Promise<unknown> =>
      byHash.call(this.redis, this.sha, keys.length, ...keys, ...args).catch((error: unknown) => {
        if (!isNoScript(error)) throw error;
        return (buffers ? commands.evalBuffer : commands.eval).call(this.redis, this.source, keys.length, ...keys, ...args);
      });
    return scriptBatching.issue(send);
  }
}
