// The Lua scripts as files: each opens with its KEYS/ARGV contract and what it returns, each
// shared part is included somewhere and every include resolves, every script compiles on a real
// Redis, and every script is run by some test of its own (by name).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Redis from 'ioredis';
import { LuaScript, luaSource, scriptBatching } from '../../src/cluster/lua';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';

const ROOT = path.resolve(__dirname, '../../..'); // from dist/test/cluster
const LUA = path.join(ROOT, 'src', 'cluster', 'lua');
const names = (dir: string): string[] =>
  fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.lua'))
    .map((f) => f.slice(0, -4))
    .sort();
const scripts = names(LUA);
const includes = names(path.join(LUA, 'include'));

function testSources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? testSources(full) : entry.name.endsWith('.test.ts') ? [fs.readFileSync(full, 'utf8')] : [];
  });
}

describe('the Lua scripts as files', { timeout: 60000 }, () => {
  let server: RedisServer;
  let redis: Redis;

  before(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
  });

  after(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  it('each script opens with its contract: KEYS, ARGV (where it takes any) and what it returns', () => {
    assert.ok(scripts.length >= 20, `found ${scripts.length}`);
    for (const name of scripts) {
      const source = fs.readFileSync(path.join(LUA, `${name}.lua`), 'utf8');
      const lines = source.split('\n');
      const end = lines.findIndex((line) => !line.startsWith('--'));
      const header = lines.slice(0, end).join('\n');
      assert.ok(header.length > 0, `${name}.lua opens with a comment`);
      assert.match(header, /KEYS\[1\]/, `${name}.lua names its keys`);
      if (/ARGV\[/.test(source.slice(header.length))) assert.match(header, /ARGV\[1\]/, `${name}.lua names its arguments`);
      assert.match(header, /Returns/, `${name}.lua says what it returns`);
    }
  });

  it('every shared part (lua/include/) is included by a script, and every include resolves', () => {
    const used = new Set<string>();
    for (const name of scripts) {
      for (const match of fs.readFileSync(path.join(LUA, `${name}.lua`), 'utf8').matchAll(/^--!include (\S+)$/gm)) used.add(match[1]!);
      assert.doesNotMatch(luaSource(name), /^--!\s*include/m, `${name}: an include left unresolved`);
    }
    assert.deepEqual([...used].sort(), includes);
  });

  it('every script compiles on a real Redis', async () => {
    for (const name of scripts) {
      const sha = await redis.script('LOAD', luaSource(name)).catch((err: Error) => assert.fail(`${name}.lua: ${err.message}`));
      assert.match(String(sha), /^[0-9a-f]{40}$/);
    }
  });

  it('every script is run by a test of its own', () => {
    const tests = testSources(path.join(ROOT, 'test')).join('\n');
    for (const name of scripts) assert.ok(tests.includes(`'${name}'`), `no test runs ${name}.lua`);
  });

  it('LuaScript: EVALSHA, then EVAL once the script cache is empty (a Redis restarted or failed over); the key counts of its contract only', async () => {
    const client = new Redis(server.url, { enableAutoPipelining: true });
    try {
      const touch = new LuaScript(client, 'registry-touch', [1]);
      await client.hset('lua-test:session', 'userId', 'ann');
      assert.equal(await touch.run(['lua-test:session'], [60, 1]), 1);
      await client.script('FLUSH');
      // Several in one auto-pipeline, as a busy instance sends them: each falls back on its own.
      const again = await Promise.all([touch.run(['lua-test:session'], [60, 2]), touch.run(['lua-test:gone'], [60, 2]), touch.runForBuffers(['lua-test:session'], [60, 3])]);
      assert.deepEqual(again, [1, 0, 1]);
      assert.equal(await client.hget('lua-test:session', 'lastSeenAt'), '3');
      const [loaded] = (await client.script('EXISTS', createHash('sha1').update(luaSource('registry-touch')).digest('hex'))) as number[];
      assert.equal(loaded, 1, 'the fallback loaded it back into the cache');
      const view = new LuaScript(client, 'presence-view', [3]);
      await assert.rejects(view.run(['a', 'b'], []), /presence-view is not defined for 2 keys/);
    } finally {
      client.disconnect();
    }
  });

  it('gathered script calls that come within a window of the last go out together, in one write to Redis; after a quiet window, at once; run never waits', async () => {
    const client = new Redis(server.url, { enableAutoPipelining: true });
    const saved = { ...scriptBatching };
    // 5 ms apart: a reply is back before the next call, so ioredis has no pipeline of its own running to add it to.
    const nextTurn = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5));
    /** Eight touches 5 ms apart (as CONNECTs arrive): the writes they took. */
    const eightTouches = async (windowMs: number): Promise<number> => {
      Object.assign(scriptBatching, { windowMs, maxWindowMs: windowMs });
      await new Promise((resolve) => setTimeout(resolve, windowMs + 20)); // a quiet window first
      const touch = new LuaScript(client, 'registry-touch', [1]);
      const before = writes;
      const replies: Promise<unknown>[] = [];
      for (let i = 0; i < 8; i++) {
        replies.push(touch.runGathered([`lua-test:batch-${i}`], [60, i]));
        await nextTurn();
      }
      assert.deepEqual(await Promise.all(replies), [0, 0, 0, 0, 0, 0, 0, 0]);
      return writes - before;
    };
    await client.ping(); // connected: the stream exists
    const stream = (client as unknown as { stream: { write: (...args: unknown[]) => boolean } }).stream;
    const realWrite = stream.write;
    let writes = 0;
    stream.write = function (this: unknown, ...args: unknown[]) {
      writes++;
      return realWrite.apply(this, args);
    };
    try {
      // On a loaded machine a reply may come later than 5 ms, and ioredis then holds the next
      // auto-pipeline back until it is in: some touches may still share a write.
      const unbatched = await eightTouches(0);
      assert.ok(unbatched >= 4, `no window: ${unbatched} writes`);
      assert.equal(await eightTouches(300), 2, 'the first at once, the seven after it gathered into one write');
      // A caller awaiting each call before the next (a reap's unregisters, a re-registration
      // after Redis came back empty) uses run: never held by the window, however wide.
      Object.assign(scriptBatching, { windowMs: 3000, maxWindowMs: 3000 });
      const touch = new LuaScript(client, 'registry-touch', [1]);
      let isGatheredDone = false;
      const held = touch.runGathered(['lua-test:held'], [60, 1]).then(() => (isGatheredDone = true)); // within the window of the last batch: held
      for (let i = 0; i < 5; i++) assert.equal(await touch.run([`lua-test:seq-${i}`], [60, i]), 0);
      assert.equal(isGatheredDone, false, 'five awaited run calls done while a gathered call still waits for its window');
      await held;
    } finally {
      Object.assign(scriptBatching, saved);
      stream.write = realWrite;
      client.disconnect();
    }
  });

  it('scriptBatching: the first call after a quiet window goes at once, later ones together once the window has passed; results and failures reach each caller', async () => {
    const saved = { ...scriptBatching };
    Object.assign(scriptBatching, { windowMs: 30, maxWindowMs: 30 });
    const sent: string[] = [];
    const call =
      (name: string, fails = false) =>
      () => {
        sent.push(name);
        queueMicrotask(() => sent.push(`after ${name}`));
        return fails ? Promise.reject(new Error(name)) : Promise.resolve(name);
      };
    try {
      await new Promise((resolve) => setTimeout(resolve, 60));
      const a = scriptBatching.issue(call('a'));
      assert.deepEqual(sent, ['a'], 'sent at once');
      await new Promise((resolve) => setImmediate(resolve));
      const b = scriptBatching.issue(call('b'));
      const c = scriptBatching.issue(call('c', true));
      assert.deepEqual(sent, ['a', 'after a'], 'within the window: gathered');
      assert.equal(await a, 'a');
      assert.equal(await b, 'b');
      await assert.rejects(c, /c/);
      assert.deepEqual(sent.slice(2, 4), ['b', 'c'], 'issued together, in order, in one turn');
      await new Promise((resolve) => setTimeout(resolve, 60));
      void scriptBatching.issue(call('d'));
      assert.equal(sent.at(-1), 'd', 'after a quiet window: at once');
    } finally {
      Object.assign(scriptBatching, saved);
    }
  });
});
