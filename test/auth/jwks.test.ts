// JWT_JWKS_URL: keys fetched from a local JWKS endpoint, cached, refetched on an unknown kid
// (key rotation). The broker lets an unknown kid trigger a refetch at most every 5 s (jose's
// cooldown), so the rotation step waits that long once.

import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import type { JWK, KeyLike } from 'jose';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { ClientPool, SECRET, accepted, bearer, mint, refused } from '../helpers/jwt';

const JWKS_COOLDOWN_MS = 5000;

const pool = new ClientPool();
const brokers: RunningServer[] = [];
const served: JWK[] = [];
let requests = 0;
let lastFetchAt = 0;
let jwksServer: http.Server;
let jwksUrl: string;

function listen(server: http.Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

async function publicJwk(publicKey: KeyLike, kid: string, alg: string): Promise<JWK> {
  return { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
}

before(async () => {
  jwksServer = http.createServer((req, res) => {
    if (req.url !== '/.well-known/jwks.json') {
      res.writeHead(404).end();
      return;
    }
    requests++;
    lastFetchAt = Date.now();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: served }));
  });
  jwksUrl = `http://127.0.0.1:${await listen(jwksServer)}/.well-known/jwks.json`;
});

after(async () => {
  pool.destroyAll();
  await Promise.all(brokers.map((b) => b.stop()));
  jwksServer.closeAllConnections();
  await new Promise((resolve) => jwksServer.close(resolve));
});

describe('JWT_JWKS_URL', { timeout: 15000 }, () => {
  let b: RunningServer;
  let key1: KeyLike;
  let key2: KeyLike;
  let stranger: KeyLike;
  let key2Jwk: JWK;

  before(async () => {
    const pair1 = await generateKeyPair('RS256');
    const pair2 = await generateKeyPair('ES256');
    key1 = pair1.privateKey;
    key2 = pair2.privateKey;
    stranger = (await generateKeyPair('RS256')).privateKey;
    served.push(await publicJwk(pair1.publicKey, 'k1', 'RS256'));
    // Kept aside: published only at the rotation.
    key2Jwk = await publicJwk(pair2.publicKey, 'k2', 'ES256');
    b = await startBroker({ HEARTBEAT: '0,0', JWT_JWKS_URL: jwksUrl });
    brokers.push(b);
  });

  it('a token with a known kid connects; the JWKS is fetched once and then cached', async () => {
    assert.equal(requests, 0, 'the JWKS is fetched lazily, on the first token');
    await accepted(await pool.tcp(b.tcpPort), bearer(await mint(key1, { sub: 'alice' }, { alg: 'RS256', kid: 'k1' })), 'alice');
    assert.equal(requests, 1);
    await accepted(await pool.tcp(b.tcpPort), bearer(await mint(key1, { sub: 'bob' }, { alg: 'RS256', kid: 'k1' })), 'bob');
    await accepted(await pool.ws(b.wsPort), bearer(await mint(key1, { sub: 'carol' }, { alg: 'RS256', kid: 'k1' })), 'carol');
    assert.equal(requests, 1, 'not fetched per CONNECT');
  });

  it('a token naming a known kid but signed by another key → UNAUTHENTICATED', async () => {
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(stranger, { sub: 'mallory' }, { alg: 'RS256', kid: 'k1' })), 'UNAUTHENTICATED');
  });

  it('an HS256 token (no JWT_SECRET) → UNAUTHENTICATED', async () => {
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(SECRET, { sub: 'alice' }, { kid: 'k1' })), 'UNAUTHENTICATED');
  });

  it('a burst of unknown kids right after a fetch is refused without hammering the JWKS server', async () => {
    const before = requests;
    for (const kid of ['nope-1', 'nope-2', 'nope-3']) {
      await refused(await pool.tcp(b.tcpPort), bearer(await mint(stranger, { sub: 'mallory' }, { alg: 'RS256', kid })), 'UNAUTHENTICATED');
    }
    assert.equal(requests, before, 'within the 5 s cooldown nothing is refetched');
  });

  it('rotation: a new key appears on the server; a token with its kid connects after one refetch', async () => {
    served.push(key2Jwk);
    const before = requests;
    const waitMs = lastFetchAt + JWKS_COOLDOWN_MS + 100 - Date.now();
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs));
    await accepted(await pool.ws(b.wsPort), bearer(await mint(key2, { sub: 'dave' }, { alg: 'ES256', kid: 'k2' })), 'dave');
    assert.equal(requests, before + 1, 'the unknown kid made the broker refetch the JWKS once');
    await accepted(await pool.tcp(b.tcpPort), bearer(await mint(key2, { sub: 'erin' }, { alg: 'ES256', kid: 'k2' })), 'erin');
    await accepted(await pool.tcp(b.tcpPort), bearer(await mint(key1, { sub: 'frank' }, { alg: 'RS256', kid: 'k1' })), 'frank');
    assert.equal(requests, before + 1, 'both keys are now served from the cache');
  });

  it('a kid the server does not have → UNAUTHENTICATED', async () => {
    const before = requests;
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(stranger, { sub: 'mallory' }, { alg: 'RS256', kid: 'k-unknown' })), 'UNAUTHENTICATED');
    assert.ok(requests <= before + 1);
  });
});

describe('JWT_JWKS_URL unreachable', { timeout: 15000 }, () => {
  it('a token cannot be verified → UNAUTHENTICATED, not a hang', async () => {
    const closed = http.createServer();
    const port = await listen(closed);
    await new Promise((resolve) => closed.close(resolve));
    const b = await startBroker({ HEARTBEAT: '0,0', JWT_JWKS_URL: `http://127.0.0.1:${port}/jwks.json` });
    brokers.push(b);
    const { privateKey } = await generateKeyPair('RS256');
    const startedAt = Date.now();
    await refused(await pool.tcp(b.tcpPort), bearer(await mint(privateKey, { sub: 'alice' }, { alg: 'RS256', kid: 'k1' })), 'UNAUTHENTICATED');
    assert.ok(Date.now() - startedAt < 3000);
  });
});
