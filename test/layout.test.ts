// The project's shape as the design card fixes it, and the module arrows of ARCHITECTURE.md.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

const ROOT = path.resolve(__dirname, '../..');
const read = (file: string) => fs.readFileSync(path.join(ROOT, file), 'utf8');

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((entry) => {
    const relative = path.join(dir, entry.name);
    return entry.isDirectory() ? sourceFiles(relative) : entry.name.endsWith('.ts') ? [relative] : [];
  });
}

function imports(file: string): string[] {
  return [...read(file).matchAll(/^import [^;]*? from '([^']+)';/gms)].map((m) => m[1]!);
}

describe('layout', () => {
  it('has the top level the design card fixes', () => {
    for (const entry of ['package.json', 'tsconfig.json', 'src', 'frames', 'test', 'bench', 'docker-compose.yml', 'README.md', '.ci/run']) {
      assert.ok(fs.existsSync(path.join(ROOT, entry)), entry);
    }
  });

  it('type-checks strictly', () => {
    const tsconfig = JSON.parse(read('tsconfig.json')) as { compilerOptions: { strict: boolean } };
    assert.equal(tsconfig.compilerOptions.strict, true);
  });

  it("depends at run time on the design card's packages only; STOMP clients are dev-only", () => {
    const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    const allowed = new Set(['ws', 'ioredis', 'fastify', 'jose', 'pino', 'prom-client', '@fastify/swagger', 'sockjs', 'undici']);
    for (const name of Object.keys(pkg.dependencies)) assert.ok(allowed.has(name), `unexpected runtime dependency ${name}`);
    for (const name of ['ws', 'ioredis', 'jose', 'pino']) assert.ok(pkg.dependencies[name], name);
    for (const client of ['@stomp/stompjs', 'stompit', 'fast-check']) assert.ok(pkg.devDependencies[client], client);
  });

  it('src/ uses no STOMP library', () => {
    for (const file of sourceFiles('src')) {
      for (const spec of imports(file)) assert.ok(!/stomp/i.test(spec), `${file} imports ${spec}`);
    }
  });

  it('the codec imports nothing else of ours; nothing imports server.ts but main.ts', () => {
    for (const file of sourceFiles('src/codec')) {
      for (const spec of imports(file)) assert.ok(!spec.startsWith('.') || spec.startsWith('./'), `${file} imports ${spec}`);
    }
    for (const file of sourceFiles('src')) {
      if (file === path.join('src', 'main.ts')) continue;
      for (const spec of imports(file)) assert.ok(!/(^|\/)server$/.test(spec), `${file} imports ${spec}`);
    }
  });

  it('only src/cluster/ imports ioredis, and only server.ts reaches into src/cluster/ (embedded mode never loads it)', () => {
    for (const file of sourceFiles('src')) {
      const isCluster = file.startsWith(path.join('src', 'cluster'));
      for (const spec of imports(file)) {
        if (spec === 'ioredis') assert.ok(isCluster, `${file} imports ioredis`);
        if (!isCluster && /(^|\/)cluster\//.test(spec)) assert.fail(`${file} imports ${spec} statically`);
      }
    }
  });

  it('only src/backend/ imports undici, and outside it only types come from src/backend/ (server.ts loads it when BACKEND_URL is set; src/cluster/ is itself loaded lazily)', () => {
    for (const file of sourceFiles('src')) {
      const isBackend = file.startsWith(path.join('src', 'backend'));
      if (file.startsWith(path.join('src', 'cluster'))) {
        for (const spec of imports(file)) assert.ok(!/(^|\/)backend\/(backend|client|app-destinations|access-hooks)$/.test(spec), `${file} imports ${spec}`);
        continue;
      }
      for (const match of read(file).matchAll(/^import (type )?[^;]*? from '([^']+)';/gms)) {
        const [, isTypeOnly, spec] = match;
        if (spec === 'undici') assert.ok(isBackend, `${file} imports undici`);
        if (!isBackend && /(^|\/)backend\//.test(spec!)) assert.ok(isTypeOnly !== undefined, `${file} imports ${spec} statically`);
      }
    }
  });

  it('the broker knows sessions only through its Subscriber interface', () => {
    for (const file of sourceFiles('src/broker')) {
      for (const spec of imports(file)) assert.ok(!spec.includes('session'), `${file} imports ${spec}`);
    }
  });

  it("README's Errors section lists every ERROR code the broker can send", () => {
    const readme = read('README.md');
    const errors = readme.slice(readme.indexOf('## Errors'), readme.indexOf('## Configuration'));
    const codes = new Set<string>();
    for (const file of ['src/session/errors.ts', 'src/codec/errors.ts']) {
      const union = /export type \w+Code =([^;]+);/.exec(read(file))![1]!;
      for (const match of union.matchAll(/'([A-Z_]+)'/g)) codes.add(match[1]!);
    }
    assert.ok(codes.size > 30, `found ${codes.size} codes`);
    for (const code of codes) assert.ok(errors.includes(`\`${code}\``), `README Errors lacks ${code}`);
  });

  it('.ci/run installs with npm ci and runs exactly the README test command', () => {
    const ci = read('.ci/run');
    assert.match(ci, /^npm ci\b/m);
    const readme = read('README.md');
    const command = /^(npm test)\s/m.exec(readme.slice(readme.indexOf('```sh')))?.[1];
    assert.equal(command, 'npm test');
    const lines = ci.split('\n').map((l) => l.trim());
    assert.equal(lines.filter((l) => l === command).length, 1);
    assert.ok(lines.indexOf(command) > lines.findIndex((l) => l.startsWith('npm ci')));
  });
});
