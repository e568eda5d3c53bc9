// Issue 21, point 6: no secret is printed. A configuration error shows a URL with its password
// and query string masked; the HTTP sidecar logs and answers paths, never query strings.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import pino from 'pino';
import { ConfigError, loadConfig, redactUrls } from '../../src/config';
import { startBroker } from '../helpers/broker';

const MAIN = path.resolve(__dirname, '../../src/main.js');

function configErrorOf(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.message;
  }
  throw new Error('expected a ConfigError');
}

describe('configuration errors never echo a credential inside a URL', () => {
  it('an invalid REDIS_URL is shown with its password masked', () => {
    const message = configErrorOf({ REDIS_URL: 'redis://default:hunter2-secret@redis.example:notaport' });
    assert.match(message, /^REDIS_URL=/);
    assert.doesNotMatch(message, /hunter2/);
    assert.match(message, /redis:\/\/default:\*\*\*@redis\.example/);
  });

  it('an invalid JWT_JWKS_URL is shown without its user info or query string', () => {
    const message = configErrorOf({ JWT_JWKS_URL: 'https://svc:pa55word@[bad/.well-known/jwks.json?api_key=k3y-secret' });
    assert.doesNotMatch(message, /pa55word|k3y-secret/);
    assert.match(message, /^JWT_JWKS_URL=/);
  });

  it('a password with a character it should have percent-encoded (what makes the URL invalid) is masked whole', () => {
    const cases: [string, string][] = [
      ['redis://default:ab/cd-s3cret@redis.example:6379', 'redis://default:***@redis.example:6379'],
      ['redis://u:p@ss-s3cret@redis.example:notaport', 'redis://u:***@redis.example:notaport'],
      ['redis://:pa#ss-s3cret@redis.example:6379', 'redis://:***@redis.example:6379'],
      ['redis://:pa?ss-s3cret@redis.example:6379', 'redis://:***@redis.example:6379'],
      ['redis://:pa ss-s3cret@redis.example:6379', 'redis://:***@redis.example:6379'],
      ['rediss://tok en-s3cret@redis.example:6379', 'rediss://***@redis.example:6379'],
    ];
    for (const [url, shown] of cases) {
      const message = configErrorOf({ REDIS_URL: url });
      assert.doesNotMatch(message, /s3cret|ab\/cd|pa#|pa\?|pa ss|tok /, url);
      assert.equal(message, `REDIS_URL=${JSON.stringify(shown)}: expected a redis:// or rediss:// URL`);
    }
    const jwks = configErrorOf({ JWT_JWKS_URL: 'https://svc:pa/55-s3cret@[bad/jwks.json#k3y-s3cret' });
    assert.doesNotMatch(jwks, /s3cret|pa\//);
    assert.match(jwks, /https:\/\/svc:\*\*\*@\[bad\/jwks\.json#\*\*\*/);
    assert.equal(redactUrls('redis://a:p1-s3cret@h1:1,rediss://b:p2/s3cret@h2:2'), 'redis://a:***@h1:1,rediss://b:***@h2:2', 'each URL of a list on its own');
  });

  it('redactUrls leaves values without URLs alone', () => {
    assert.equal(redactUrls('often'), 'often');
    assert.equal(redactUrls('redis://host:6379/0'), 'redis://host:6379/0');
    assert.equal(redactUrls('redis://:only-password@host'), 'redis://:***@host');
    assert.equal(redactUrls('rediss://token@host?x=1'), 'rediss://***@host?***');
  });

  it('the stompd command prints the masked line and exits 1', async () => {
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, [MAIN], { env: { PATH: process.env.PATH ?? '', REDIS_URL: 'redis://u:top-secret-pw@host:99999999' }, timeout: 20_000 }, (_error, _stdout, stderr) =>
        resolve({ code: child.exitCode, stderr }),
      );
    });
    assert.equal(code, 1);
    assert.match(stderr, /invalid configuration: REDIS_URL=/);
    assert.doesNotMatch(stderr, /top-secret-pw/);
  });
});

describe('HTTP logs and answers carry paths, never query strings', { timeout: 20_000 }, () => {
  it('a refused request and an unknown route with ?access_token=… leave no trace of it', async () => {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const broker = await startBroker({ HTTP_PORT: '0', ADMIN_TOKEN: 'the-admin-token-0123456789', LOG_LEVEL: 'debug' }, { logger: pino({ level: 'debug' }, stream) });
    try {
      const base = `http://127.0.0.1:${broker.httpPort!}`;
      const refused = await fetch(`${base}/api/session/all?access_token=qs-secret-1`);
      assert.equal(refused.status, 401);
      const unknown = await fetch(`${base}/nowhere?access_token=qs-secret-2`, { headers: { authorization: 'Bearer the-admin-token-0123456789' } });
      assert.equal(unknown.status, 404);
      const text = await unknown.text();
      assert.match(text, /no route GET \/nowhere/);
      assert.doesNotMatch(text, /qs-secret/);
      const log = lines.join('');
      assert.match(log, /HTTP API: authentication refused/);
      assert.doesNotMatch(log, /qs-secret/);
    } finally {
      await broker.stop();
    }
  });
});
