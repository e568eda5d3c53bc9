// README's JavaScript blocks, run as written against a live broker: a user who copies one
// gets what README says it prints.
//
// Each ```js block must be preceded by a comment that says how to check it:
//   <!-- readme-test env="NAME=value ..." expect="text" once="line a|line b" -->
// env: broker settings (a bare JWT_SECRET means: a secret, plus a token endpoint on the
// port the block fetches from); expect: text the block must print; once: lines that must be
// printed exactly once. The block's ports (15674, 61613, 3000) are replaced by live ones.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { harness } from './helpers/harness';
import { SECRET, mint } from './helpers/jwt';

const ROOT = path.resolve(__dirname, '../..');
const BLOCK_DIR = path.join(ROOT, 'dist', 'readme-blocks');
const RUN_TIMEOUT_MS = 15000;

interface Block {
  code: string;
  line: number;
  env: Record<string, string>;
  expect: string | undefined;
  once: string[];
}

function attribute(comment: string, name: string): string | undefined {
  return new RegExp(`\\b${name}="([^"]*)"`).exec(comment)?.[1];
}

export function readmeBlocks(readme: string): Block[] {
  const blocks: Block[] = [];
  const lines = readme.split('\n');
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```js') continue;
    const end = lines.indexOf('```', i + 1);
    assert.ok(end > i, `README line ${i + 1}: unterminated js block`);
    let before = i - 1;
    while (before >= 0 && lines[before]!.trim() === '') before--;
    const comment = lines[before] ?? '';
    assert.match(comment, /^<!-- readme-test\b.*-->$/, `README line ${i + 1}: a js block needs a "<!-- readme-test ... -->" line saying what it prints`);
    const env: Record<string, string> = {};
    for (const pair of (attribute(comment, 'env') ?? '').split(/\s+/).filter(Boolean)) {
      const [name, value] = pair.split('=', 2) as [string, string | undefined];
      env[name] = value ?? (name === 'JWT_SECRET' ? SECRET : '');
    }
    const once = attribute(comment, 'once');
    blocks.push({ code: lines.slice(i + 1, end).join('\n'), line: i + 1, env, expect: attribute(comment, 'expect'), once: once ? once.split('|') : [] });
    i = end;
  }
  return blocks;
}

/** Serves a fresh token for alice, as an app's backend would. */
async function tokenEndpoint(): Promise<http.Server> {
  const server = http.createServer((request, response) => {
    if (request.url !== '/api/stomp-token') {
      response.writeHead(404).end();
      return;
    }
    mint(SECRET, { sub: 'alice' }, { exp: Math.floor(Date.now() / 1000) + 60 }).then(
      (token) => response.end(token),
      (error: unknown) => response.writeHead(500).end(String(error)),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

function run(file: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [file], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const h = harness({});
const blocks = readmeBlocks(fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8'));

describe('README JavaScript blocks run as written', { timeout: 60000 }, () => {
  it('README has runnable blocks (the stompjs and stompit examples at least)', () => {
    assert.ok(blocks.length >= 4, `found ${blocks.length}`);
    assert.ok(blocks.some((b) => b.code.includes("from '@stomp/stompjs'")));
    assert.ok(blocks.some((b) => b.code.includes("from 'stompit'")));
  });

  for (const block of blocks) {
    it(`the block at README line ${block.line} prints ${JSON.stringify(block.expect)}`, async () => {
      const broker = await h.broker(block.env);
      const tokens = block.env.JWT_SECRET !== undefined ? await tokenEndpoint() : undefined;
      try {
        const code = block.code
          .replaceAll(':15674', `:${broker.wsPort}`)
          .replaceAll(':61613', `:${broker.tcpPort}`)
          .replaceAll('port: 61613', `port: ${broker.tcpPort}`)
          .replaceAll(':3000', `:${tokens ? (tokens.address() as AddressInfo).port : 3000}`);
        fs.mkdirSync(BLOCK_DIR, { recursive: true });
        const file = path.join(BLOCK_DIR, `line-${block.line}.mjs`);
        fs.writeFileSync(file, code);
        const result = await run(file);
        const output = `stdout: ${result.stdout}\nstderr: ${result.stderr}`;
        assert.equal(result.code, 0, `exit code ${result.code}\n${output}`);
        if (block.expect !== undefined) assert.ok(result.stdout.includes(block.expect), output);
        const printed = result.stdout.split('\n');
        for (const line of block.once) assert.equal(printed.filter((l) => l === line).length, 1, `"${line}" exactly once\n${output}`);
      } finally {
        tokens?.close();
      }
    });
  }
});
