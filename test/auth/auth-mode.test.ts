// AUTH=jwt / none / auto, and the configuration errors around them.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config';
import type { RunningServer } from '../../src/server';
import { harness } from '../helpers/harness';
import { ClientPool, SECRET, accepted, bearer, mint, refused, recordConnects, sessionOf } from '../helpers/jwt';

const pool = new ClientPool();
const h = harness();
const broker = (env: Record<string, string>): Promise<RunningServer> => h.broker(env);
after(() => pool.destroyAll());

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('AUTH modes', { timeout: 15000 }, () => {
  it('AUTH=jwt refuses a CONNECT with just `login` → UNAUTHENTICATED; a token still connects', async () => {
    const b = await broker({ AUTH: 'jwt', JWT_SECRET: SECRET });
    await refused(await pool.tcp(b.tcpPort), { login: 'alice' }, 'UNAUTHENTICATED');
    await refused(await pool.tcp(b.tcpPort), { login: 'alice', passcode: '' }, 'UNAUTHENTICATED');
    await accepted(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'alice' })), 'alice');
  });

  it('with a JWT key set and no AUTH, the default is jwt: `login` alone is refused', async () => {
    assert.equal(loadConfig({ JWT_SECRET: SECRET }).authMode, 'jwt');
    const b = await broker({ JWT_SECRET: SECRET });
    await refused(await pool.tcp(b.tcpPort), { login: 'alice' }, 'UNAUTHENTICATED');
    await refused(await pool.tcp(b.tcpPort), { login: 'alice', passcode: 'alice-password' }, 'UNAUTHENTICATED');
  });

  it('AUTH=none takes `login` as the user id (and ignores a token)', async () => {
    const b = await broker({ AUTH: 'none' });
    const connects = recordConnects(b);
    const info = sessionOf(connects, await accepted(await pool.tcp(b.tcpPort), { login: 'alice' }, 'alice'));
    assert.equal(info.isAnonymous, false);
    await accepted(await pool.tcp(b.tcpPort), { login: 'bob', ...bearer(await mint(SECRET, { sub: 'carol' })) }, 'bob');
  });

  it('AUTH=none without login: an anonymous user of its own', async () => {
    const b = await broker({ AUTH: 'none' });
    const connects = recordConnects(b);
    const connected = await accepted(await pool.tcp(b.tcpPort), {});
    const info = sessionOf(connects, connected);
    assert.equal(info.isAnonymous, true);
    assert.match(info.userId, /^anonymous-/);
  });

  it('no key and no AUTH: embedded mode (none)', () => {
    assert.equal(loadConfig({}).authMode, 'none');
  });
});

describe('auth configuration errors', { timeout: 15000 }, () => {
  it('AUTH=jwt without any key → ConfigError on AUTH', () => {
    const error = configError({ AUTH: 'jwt' });
    assert.equal(error.variable, 'AUTH');
    assert.match(error.message, /JWT_SECRET|JWT_PUBLIC_KEY|JWT_JWKS_URL/);
  });

  it('AUTH=jwt with any one key is fine', () => {
    assert.equal(loadConfig({ AUTH: 'jwt', JWT_SECRET: SECRET }).authMode, 'jwt');
    assert.equal(loadConfig({ AUTH: 'jwt', JWT_JWKS_URL: 'https://auth.example.com/jwks.json' }).authMode, 'jwt');
  });

  it('AUTH=none with HOST=0.0.0.0 → ConfigError on AUTH, unless ALLOW_INSECURE_AUTH=1', () => {
    assert.equal(configError({ AUTH: 'none', HOST: '0.0.0.0' }).variable, 'AUTH');
    assert.equal(configError({ HOST: '0.0.0.0' }).variable, 'AUTH', 'the default (none, no key) is refused off loopback too');
    const config = loadConfig({ AUTH: 'none', HOST: '0.0.0.0', ALLOW_INSECURE_AUTH: '1' });
    assert.equal(config.authMode, 'none');
    assert.equal(config.host, '0.0.0.0');
  });

  it('a JWT key with HOST=0.0.0.0 needs no ALLOW_INSECURE_AUTH', () => {
    assert.equal(loadConfig({ HOST: '0.0.0.0', JWT_SECRET: SECRET }).authMode, 'jwt');
  });

  it('JWT_SECRET shorter than 32 bytes → ConfigError on JWT_SECRET that never shows the secret', () => {
    const short = 'hunter2-short-Secret-31-bytes!!';
    assert.equal(Buffer.byteLength(short), 31);
    const error = configError({ JWT_SECRET: short });
    assert.equal(error.variable, 'JWT_SECRET');
    assert.ok(!error.message.includes(short), error.message);
    assert.ok(!error.message.includes('hunter2'), error.message);
    assert.ok(!String(error.stack).includes(short));
    // 32 bytes is enough (multi-byte characters count in bytes).
    assert.equal(loadConfig({ JWT_SECRET: `${short}!` }).jwt.secret, `${short}!`);
    assert.equal(configError({ JWT_SECRET: 'é'.repeat(15) }).variable, 'JWT_SECRET');
    assert.equal(loadConfig({ JWT_SECRET: 'é'.repeat(16) }).authMode, 'jwt');
  });

  it('JWT_PUBLIC_KEY that is not PEM, JWT_JWKS_URL that is not http(s) → ConfigError on each', () => {
    assert.equal(configError({ JWT_PUBLIC_KEY: 'ssh-rsa AAAAB3Nza' }).variable, 'JWT_PUBLIC_KEY');
    assert.equal(configError({ JWT_JWKS_URL: 'ftp://keys.example.com/jwks' }).variable, 'JWT_JWKS_URL');
  });
});
