// JWT authentication with real tokens: what a client observes on CONNECT.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { UnsecuredJWT, exportSPKI, generateKeyPair } from 'jose';
import type { KeyLike } from 'jose';
import type { RunningServer } from '../../src/server';
import type { SessionInfo } from '../../src/session/events';
import { startBroker } from '../helpers/broker';
import { harness } from '../helpers/harness';
import { ClientPool, OTHER_SECRET, SECRET, accepted, bearer, mint, nowS, recordConnects, refused, sessionOf, unsecuredToken } from '../helpers/jwt';

const pool = new ClientPool();
const h = harness();
const broker = (env: Record<string, string>): Promise<RunningServer> => h.broker(env);
after(() => pool.destroyAll());

describe('JWT with JWT_SECRET (HS256/384/512)', { timeout: 15000 }, () => {
  let b: RunningServer;
  let connects: Map<string, SessionInfo>;

  before(async () => {
    b = await broker({ JWT_SECRET: SECRET });
    connects = recordConnects(b);
  });

  for (const alg of ['HS256', 'HS384', 'HS512']) {
    it(`${alg}: a good token connects as its sub`, async () => {
      const token = await mint(SECRET, { sub: `user-${alg}` }, { alg });
      const connected = await accepted(await pool.tcp(b.tcpPort), bearer(token), `user-${alg}`);
      const info = sessionOf(connects, connected);
      assert.equal(info.userId, `user-${alg}`);
      assert.equal(info.isAnonymous, false);
      assert.deepEqual([...info.roles], []);
    });
  }

  it('roles from a `role` string claim reach the session', async () => {
    const token = await mint(SECRET, { sub: 'agent-1', role: 'AGENT' });
    const info = sessionOf(connects, await accepted(await pool.tcp(b.tcpPort), bearer(token), 'agent-1'));
    assert.deepEqual([...info.roles], ['AGENT']);
  });

  it('roles from a `roles` array claim reach the session', async () => {
    const token = await mint(SECRET, { sub: 'boss', roles: ['ADMIN', 'AGENT'] });
    const info = sessionOf(connects, await accepted(await pool.tcp(b.tcpPort), bearer(token), 'boss'));
    assert.deepEqual([...info.roles], ['ADMIN', 'AGENT']);
  });

  it('a token signed with another secret → UNAUTHENTICATED', async () => {
    const token = await mint(OTHER_SECRET, { sub: 'mallory' });
    await refused(await pool.tcp(b.tcpPort), bearer(token), 'UNAUTHENTICATED');
  });

  it('a token whose payload was altered after signing → UNAUTHENTICATED', async () => {
    const [head, , signature] = (await mint(SECRET, { sub: 'alice' })).split('.');
    const forged = `${head}.${Buffer.from(JSON.stringify({ sub: 'admin', exp: nowS() + 3600 })).toString('base64url')}.${signature}`;
    await refused(await pool.tcp(b.tcpPort), bearer(forged), 'UNAUTHENTICATED');
  });

  it('no token at all → UNAUTHENTICATED', async () => {
    await refused(await pool.tcp(b.tcpPort), {}, 'UNAUTHENTICATED');
  });

  it('an Authorization header that is not Bearer counts as no token → UNAUTHENTICATED', async () => {
    await refused(await pool.tcp(b.tcpPort), { Authorization: `Basic ${Buffer.from('alice:pw').toString('base64')}` }, 'UNAUTHENTICATED');
  });

  const good = { sub: 'alice', exp: nowS() + 3600 };
  const malformed: [string, string][] = [
    ['not a JWT', 'not-a-jwt'],
    ['two parts', 'abc.def'],
    ['garbage base64url parts', 'a.b.c'],
    ['payload not JSON', `${Buffer.from('{"alg":"HS256"}').toString('base64url')}.${Buffer.from('nope').toString('base64url')}.sig`],
    ['header not JSON', `${Buffer.from('nope').toString('base64url')}.${Buffer.from(JSON.stringify(good)).toString('base64url')}.sig`],
    ['HS256 header, empty signature', unsecuredToken(good, 'HS256')],
  ];
  for (const [what, token] of malformed) {
    it(`a malformed token (${what}) → UNAUTHENTICATED`, async () => {
      await refused(await pool.tcp(b.tcpPort), bearer(token), 'UNAUTHENTICATED');
    });
  }

  it('alg "none", built by hand → UNAUTHENTICATED (also as passcode)', async () => {
    const token = unsecuredToken({ sub: 'alice', exp: nowS() + 3600 });
    assert.equal(token.split('.').length, 3);
    assert.ok(token.endsWith('.'));
    await refused(await pool.tcp(b.tcpPort), bearer(token), 'UNAUTHENTICATED');
    await refused(await pool.tcp(b.tcpPort), { passcode: token }, 'UNAUTHENTICATED');
  });

  it('alg "none" spelled otherwise (None, NONE) → UNAUTHENTICATED', async () => {
    for (const alg of ['None', 'NONE', 'nOnE']) {
      await refused(await pool.tcp(b.tcpPort), bearer(unsecuredToken({ sub: 'alice', exp: nowS() + 3600 }, alg)), 'UNAUTHENTICATED');
    }
  });

  it("jose's UnsecuredJWT → UNAUTHENTICATED", async () => {
    const token = new UnsecuredJWT({ role: 'ADMIN' }).setSubject('alice').setIssuedAt().setExpirationTime('1h').encode();
    await refused(await pool.tcp(b.tcpPort), bearer(token), 'UNAUTHENTICATED');
  });

  it('an RS256 token when only JWT_SECRET is configured → UNAUTHENTICATED', async () => {
    const { privateKey } = await generateKeyPair('RS256');
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(privateKey, { sub: 'alice' }, { alg: 'RS256' })), 'UNAUTHENTICATED');
  });

  it('no sub claim → UNAUTHENTICATED', async () => {
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { role: 'ADMIN' })), 'UNAUTHENTICATED');
  });

  it('an empty or non-string sub → UNAUTHENTICATED', async () => {
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: '' })), 'UNAUTHENTICATED');
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 42 as unknown as string })), 'UNAUTHENTICATED');
  });

  it('an expired token at CONNECT → TOKEN_EXPIRED', async () => {
    const token = await mint(SECRET, { sub: 'alice' }, { exp: nowS() - 3600 });
    await refused(await pool.tcp(b.tcpPort), bearer(token), 'TOKEN_EXPIRED');
  });

  it('not yet valid (nbf 60 s ahead, beyond the default 5 s tolerance) → UNAUTHENTICATED', async () => {
    const token = await mint(SECRET, { sub: 'alice' }, { nbf: nowS() + 60 });
    await refused(await pool.tcp(b.tcpPort), bearer(token), 'UNAUTHENTICATED');
  });

  it('nbf within the clock tolerance (2 s ahead, tolerance 5 s) connects', async () => {
    const token = await mint(SECRET, { sub: 'skewed' }, { nbf: nowS() + 2 });
    await accepted(await pool.tcp(b.tcpPort), bearer(token), 'skewed');
  });

  it('the ERROR never echoes the token', async () => {
    const token = await mint(OTHER_SECRET, { sub: 'mallory' });
    const error = await refused(await pool.tcp(b.tcpPort), bearer(token), 'UNAUTHENTICATED');
    assert.ok(!JSON.stringify(error.headers).includes(token.split('.')[2]!));
    assert.ok(!error.body.toString().includes(token.split('.')[2]!));
  });
});

describe('JWT_USER_CLAIM and JWT_ROLE_CLAIM', { timeout: 15000 }, () => {
  let b: RunningServer;
  let connects: Map<string, SessionInfo>;

  before(async () => {
    b = await broker({ JWT_SECRET: SECRET, JWT_USER_CLAIM: 'uid', JWT_ROLE_CLAIM: 'groups' });
    connects = recordConnects(b);
  });

  it('the user id comes from `uid`, the roles from `groups`', async () => {
    const token = await mint(SECRET, { sub: 'ignored-sub', uid: 'u-7', groups: ['CUSTOMER'], role: 'ADMIN' });
    const info = sessionOf(connects, await accepted(await pool.tcp(b.tcpPort), bearer(token), 'u-7'));
    assert.equal(info.userId, 'u-7');
    assert.deepEqual([...info.roles], ['CUSTOMER']);
  });

  it('a `role` claim no longer counts when JWT_ROLE_CLAIM names another', async () => {
    const token = await mint(SECRET, { uid: 'u-8', role: 'ADMIN', roles: ['ADMIN'] });
    const info = sessionOf(connects, await accepted(await pool.tcp(b.tcpPort), bearer(token), 'u-8'));
    assert.deepEqual([...info.roles], []);
  });

  it('a token with a sub but no `uid` → UNAUTHENTICATED', async () => {
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'alice' })), 'UNAUTHENTICATED');
  });
});

describe('JWT_ISSUER and JWT_AUDIENCE', { timeout: 15000 }, () => {
  let b: RunningServer;

  before(async () => {
    b = await broker({ JWT_SECRET: SECRET, JWT_ISSUER: 'https://auth.example.com', JWT_AUDIENCE: 'stompd' });
  });

  it('the right issuer and audience connect (also with aud as an array)', async () => {
    await accepted(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'alice' }, { iss: 'https://auth.example.com', aud: 'stompd' })), 'alice');
    await accepted(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'bob' }, { iss: 'https://auth.example.com', aud: ['other', 'stompd'] })), 'bob');
  });

  it('a wrong issuer → UNAUTHENTICATED', async () => {
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'alice' }, { iss: 'https://evil.example.com', aud: 'stompd' })), 'UNAUTHENTICATED');
  });

  it('a wrong audience → UNAUTHENTICATED', async () => {
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'alice' }, { iss: 'https://auth.example.com', aud: 'another-app' })), 'UNAUTHENTICATED');
  });

  it('no iss or no aud claim → UNAUTHENTICATED', async () => {
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'alice' }, { aud: 'stompd' })), 'UNAUTHENTICATED');
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'alice' }, { iss: 'https://auth.example.com' })), 'UNAUTHENTICATED');
  });
});

describe('JWT_CLOCK_TOLERANCE_S', { timeout: 15000 }, () => {
  it('a token expired 2 s ago connects with a tolerance of 10 s', async () => {
    const b = await broker({ JWT_SECRET: SECRET, JWT_CLOCK_TOLERANCE_S: '10' });
    await accepted(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'late' }, { exp: nowS() - 2 })), 'late');
  });

  it('the same token is refused with a tolerance of 0 → TOKEN_EXPIRED', async () => {
    const b = await broker({ JWT_SECRET: SECRET, JWT_CLOCK_TOLERANCE_S: '0' });
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'late' }, { exp: nowS() - 2 })), 'TOKEN_EXPIRED');
  });

  it('nbf 2 s ahead is refused with a tolerance of 0 → UNAUTHENTICATED', async () => {
    const b = await broker({ JWT_SECRET: SECRET, JWT_CLOCK_TOLERANCE_S: '0' });
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'early' }, { nbf: nowS() + 2 })), 'UNAUTHENTICATED');
  });
});

describe('JWT_REQUIRE_EXP', { timeout: 15000 }, () => {
  it('by default a token without exp is refused → UNAUTHENTICATED, naming the claim', async () => {
    const b = await broker({ JWT_SECRET: SECRET });
    const error = await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'forever' }, { exp: null })), 'UNAUTHENTICATED');
    assert.match(error.headers.find(([name]) => name === 'message')?.[1] ?? '', /exp/);
  });

  it('JWT_REQUIRE_EXP=0 accepts it (the session then never expires)', async () => {
    const b = await broker({ JWT_SECRET: SECRET, JWT_REQUIRE_EXP: '0' });
    await accepted(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'forever' }, { exp: null })), 'forever');
  });
});

describe('JWT_PUBLIC_KEY (PEM)', { timeout: 15000 }, () => {
  const cases: { alg: string; options?: { crv?: string } }[] = [{ alg: 'RS256' }, { alg: 'PS256' }, { alg: 'ES256' }, { alg: 'ES384' }, { alg: 'EdDSA', options: { crv: 'Ed25519' } }];

  for (const { alg, options } of cases) {
    describe(alg, () => {
      let b: RunningServer;
      let privateKey: KeyLike;
      let otherPrivateKey: KeyLike;

      before(async () => {
        const pair = await generateKeyPair(alg, options);
        privateKey = pair.privateKey;
        otherPrivateKey = (await generateKeyPair(alg, options)).privateKey;
        b = await broker({ JWT_PUBLIC_KEY: await exportSPKI(pair.publicKey) });
      });

      it('a good token connects as its sub', async () => {
        const token = await mint(privateKey, { sub: `user-${alg}`, roles: ['AGENT'] }, { alg });
        await accepted(await pool.tcp(b.tcpPort), bearer(token), `user-${alg}`);
      });

      it('a token signed by another key pair of the same type → UNAUTHENTICATED', async () => {
        const token = await mint(otherPrivateKey, { sub: 'mallory' }, { alg });
        await refused(await pool.tcp(b.tcpPort), bearer(token), 'UNAUTHENTICATED');
      });
    });
  }

  describe('an RSA public key', () => {
    let b: RunningServer;
    let pem: string;
    let privateKey: KeyLike;

    before(async () => {
      const pair = await generateKeyPair('RS256');
      privateKey = pair.privateKey;
      pem = await exportSPKI(pair.publicKey);
      b = await broker({ JWT_PUBLIC_KEY: pem });
    });

    it('given with literal "\\n" escapes instead of newlines, it still verifies', async () => {
      const escaped = pem.trim().replace(/\n/g, '\\n');
      assert.ok(!escaped.includes('\n') && escaped.includes('\\n'));
      const b2 = await broker({ JWT_PUBLIC_KEY: escaped });
      await accepted(await pool.tcp(b2.tcpPort), bearer(await mint(privateKey, { sub: 'escaped' }, { alg: 'RS256' })), 'escaped');
      await refused(await pool.tcp(b2.tcpPort), bearer(await mint((await generateKeyPair('RS256')).privateKey, { sub: 'x' }, { alg: 'RS256' })), 'UNAUTHENTICATED');
    });

    it('an HS256 token when only JWT_PUBLIC_KEY is configured → UNAUTHENTICATED', async () => {
      await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'alice' })), 'UNAUTHENTICATED');
    });

    it('algorithm confusion: HS256 signed with the PEM text of the public key → UNAUTHENTICATED', async () => {
      for (const secret of [pem, pem.trim()]) {
        for (const alg of ['HS256', 'HS384', 'HS512']) {
          await refused(await pool.tcp(b.tcpPort), bearer(await mint(secret, { sub: 'admin' }, { alg })), 'UNAUTHENTICATED');
        }
      }
    });

    it('an ES256 token against an RSA key → UNAUTHENTICATED', async () => {
      const { privateKey: ecKey } = await generateKeyPair('ES256');
      await refused(await pool.tcp(b.tcpPort), bearer(await mint(ecKey, { sub: 'alice' }, { alg: 'ES256' })), 'UNAUTHENTICATED');
    });

    it('the same RSA key signing RS512 and PS384 is accepted (any RSA algorithm)', async () => {
      await accepted(await pool.tcp(b.tcpPort), bearer(await mint(privateKey, { sub: 'rs512' }, { alg: 'RS512' })), 'rs512');
      await accepted(await pool.tcp(b.tcpPort), bearer(await mint(privateKey, { sub: 'ps384' }, { alg: 'PS384' })), 'ps384');
    });
  });

  it('JWT_SECRET and JWT_PUBLIC_KEY together: each verifies its own family', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const pem = await exportSPKI(publicKey);
    const b = await broker({ JWT_SECRET: SECRET, JWT_PUBLIC_KEY: pem });
    await accepted(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'hs-user' })), 'hs-user');
    await accepted(await pool.tcp(b.tcpPort), bearer(await mint(privateKey, { sub: 'es-user' }, { alg: 'ES256' })), 'es-user');
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(pem, { sub: 'admin' })), 'UNAUTHENTICATED');
  });

  it('a PEM that is not a key stops the start with ConfigError JWT_PUBLIC_KEY', async () => {
    await assert.rejects(
      startBroker({ JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----' }),
      (error: Error & { variable?: string }) => error.name === 'ConfigError' && error.variable === 'JWT_PUBLIC_KEY',
    );
  });
});
