// Destination access rules (ACL_FILE) by role and pattern, with real JWTs for the roles.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { compilePattern, parseRules } from '../../src/auth/acl';
import { ConfigError } from '../../src/config';
import type { RunningServer } from '../../src/server';
import { startBroker } from '../helpers/broker';
import { RawClient, header } from '../helpers/raw-client';

const SECRET = 'access-rules-test-secret-of-32-bytes-or-more';
const RULES = {
  default: 'deny',
  rules: [
    { effect: 'deny', actions: ['send'], destinations: ['/topic/announcements'], roles: ['CUSTOMER'] },
    { effect: 'allow', actions: ['subscribe'], destinations: ['/user/{userId}/**', '/topic/announcements'] },
    { effect: 'allow', roles: ['AGENT', 'ADMIN'], destinations: ['/topic/support.**', '/queue/tickets'] },
    { effect: 'allow', actions: ['send'], roles: ['CUSTOMER'], destinations: ['/queue/tickets', '/user/*/queue/replies'] },
    { effect: 'allow', actions: ['send'], roles: ['ADMIN'], destinations: ['/topic/announcements'] },
    { effect: 'allow', actions: ['subscribe'], roles: ['CUSTOMER'], destinations: ['/topic/support.{userId}'] },
  ],
};

let broker: RunningServer;
let dir: string;
const clients: RawClient[] = [];

async function as(userId: string, role: string): Promise<RawClient> {
  const token = await new SignJWT({ role }).setProtectedHeader({ alg: 'HS256' }).setSubject(userId).setExpirationTime('1h').sign(Buffer.from(SECRET));
  const c = await RawClient.tcp(broker.tcpPort!);
  clients.push(c);
  await c.connect({ Authorization: `Bearer ${token}` });
  return c;
}

async function isAllowed(c: RawClient, command: 'SUBSCRIBE' | 'SEND', destination: string): Promise<boolean> {
  c.sendFrame(command, { destination, id: `id-${destination}`, receipt: `r-${destination}` }, command === 'SEND' ? 'x' : '');
  const answer = await c.next();
  if (answer.command === 'RECEIPT') return true;
  assert.equal(answer.command, 'ERROR');
  assert.match(header(answer, 'message') ?? '', /^FORBIDDEN: /);
  await c.waitClosed();
  return false;
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stompd-acl-'));
  fs.writeFileSync(path.join(dir, 'rules.json'), JSON.stringify(RULES));
  broker = await startBroker({ HEARTBEAT: '0,0', JWT_SECRET: SECRET, ACL_FILE: path.join(dir, 'rules.json') });
});

after(async () => {
  for (const c of clients) c.destroy();
  await broker.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('access rules', { timeout: 15000 }, () => {
  it('allow by role and pattern, for subscribe and send separately', async () => {
    assert.equal(await isAllowed(await as('agent1', 'AGENT'), 'SUBSCRIBE', '/topic/support.cust1'), true);
    assert.equal(await isAllowed(await as('agent1', 'AGENT'), 'SEND', '/topic/support.cust1.typing'), true);
    assert.equal(await isAllowed(await as('cust1', 'CUSTOMER'), 'SEND', '/queue/tickets'), true);
    assert.equal(await isAllowed(await as('cust1', 'CUSTOMER'), 'SEND', '/user/agent1/queue/replies'), true);
    assert.equal(await isAllowed(await as('cust1', 'CUSTOMER'), 'SUBSCRIBE', '/topic/announcements'), true);
  });

  it("deny: no matching allow, an explicit deny, or another user's {userId}", async () => {
    assert.equal(await isAllowed(await as('cust1', 'CUSTOMER'), 'SUBSCRIBE', '/queue/tickets'), false, 'customers may only send tickets');
    assert.equal(await isAllowed(await as('cust1', 'CUSTOMER'), 'SEND', '/topic/announcements'), false, 'explicit deny');
    assert.equal(await isAllowed(await as('cust1', 'CUSTOMER'), 'SUBSCRIBE', '/topic/support.cust2'), false, '{userId} is the own id only');
    assert.equal(await isAllowed(await as('nobody', 'VISITOR'), 'SEND', '/topic/anything'), false, 'default deny');
  });

  it('{userId} matches the own id, and user destinations are checked in their addressed form', async () => {
    assert.equal(await isAllowed(await as('cust1', 'CUSTOMER'), 'SUBSCRIBE', '/topic/support.cust1'), true);
    assert.equal(await isAllowed(await as('cust1', 'CUSTOMER'), 'SUBSCRIBE', '/user/queue/replies'), true, '/user/queue/replies is /user/cust1/queue/replies');
    assert.equal(await isAllowed(await as('admin', 'ADMIN'), 'SEND', '/topic/announcements'), true);
  });

  it('rules run in order: the first match decides', () => {
    const rules = parseRules(
      JSON.stringify({
        default: 'allow',
        rules: [
          { effect: 'deny', destinations: ['/topic/a.*'] },
          { effect: 'allow', destinations: ['/topic/a.b'] },
        ],
      }),
      'inline',
    );
    const principal = { userId: 'u', roles: [], isAnonymous: false };
    assert.equal(rules.isAllowed('send', '/topic/a.b', principal), false);
    assert.equal(rules.isAllowed('send', '/topic/c', principal), true, 'default allow');
  });

  it('patterns: * stops at "/", ** does not, {userId} captures one segment', () => {
    assert.ok(compilePattern('/topic/*').test('/topic/a.b'));
    assert.ok(!compilePattern('/topic/*').test('/topic/a/b'));
    assert.ok(compilePattern('/topic/**').test('/topic/a/b'));
    assert.deepEqual(compilePattern('/user/{userId}/queue/*').exec('/user/bob/queue/x')?.slice(1), ['bob']);
    assert.ok(compilePattern('/topic/a.b').test('/topic/a.b'));
    assert.ok(!compilePattern('/topic/a.b').test('/topic/aXb'), 'a dot is literal');
  });

  it('** and * match line breaks and Unicode separators too: a deny rule cannot be slipped past', () => {
    const rules = parseRules(JSON.stringify({ default: 'allow', rules: [{ effect: 'deny', destinations: ['/topic/secret.**', '/topic/hidden.*'] }] }), 'inline');
    const principal = { userId: 'eve', roles: [], isAnonymous: false };
    for (const destination of ['/topic/secret.x\ny', '/topic/secret.x\ry', '/topic/secret.x\u2028y', '/topic/secret.\u2029', '/topic/hidden.a\nb']) {
      assert.equal(rules.isAllowed('send', destination, principal), false, JSON.stringify(destination));
      assert.equal(rules.isAllowed('subscribe', destination, principal), false, JSON.stringify(destination));
    }
    assert.equal(rules.isAllowed('send', '/topic/public', principal), true);
  });

  it('a bad rules file stops the start naming ACL_FILE', async () => {
    const bad = path.join(dir, 'bad.json');
    for (const content of ['{ not json', '{"rules": {}}', '{"rules": [{"effect": "maybe", "destinations": ["/topic/a"]}]}', '{"rules": [{"effect": "allow", "destinations": ["topic/a"]}]}']) {
      fs.writeFileSync(bad, content);
      await assert.rejects(startBroker({ ACL_FILE: bad }), (e: unknown) => e instanceof ConfigError && e.variable === 'ACL_FILE', content);
    }
    await assert.rejects(startBroker({ ACL_FILE: path.join(dir, 'missing.json') }), (e: unknown) => e instanceof ConfigError && e.variable === 'ACL_FILE');
  });
});

describe('destinations with control characters', { timeout: 10000 }, () => {
  it('are refused with INVALID_DESTINATION (1.2-escaped line breaks, raw C0/DEL/C1, U+2028/U+2029), on SEND and SUBSCRIBE', async () => {
    const open = await startBroker({ HEARTBEAT: '0,0' });
    try {
      const bystander = await RawClient.tcp(open.tcpPort!);
      clients.push(bystander);
      await bystander.connect({ login: 'bystander' });
      for (const destination of ['/topic/secret.x\ny', '/topic/a\rb', '/topic/a\u0000b', '/topic/a\tb', '/topic/a\u007fb', '/topic/a\u0085b', '/topic/a\u2028b', '/queue/a\u2029b', '/user/queue/a\u001bb']) {
        for (const command of ['SEND', 'SUBSCRIBE'] as const) {
          const c = await RawClient.tcp(open.tcpPort!);
          clients.push(c);
          await c.connect({ login: 'eve' });
          c.sendFrame(command, { destination, id: 'x', receipt: 'r' }, 'x');
          const answer = await c.expect('ERROR');
          assert.match(header(answer, 'message') ?? '', /^INVALID_DESTINATION: /, `${command} ${JSON.stringify(destination)}`);
          await c.waitClosed();
        }
      }
      bystander.sendFrame('SEND', { destination: '/topic/fine', receipt: 'ok' }, 'still here');
      await bystander.expect('RECEIPT');
    } finally {
      await open.stop();
    }
  });
});

describe('default access without a rules file', { timeout: 10000 }, () => {
  it("everything is allowed but another user's /user/ subscriptions; sending to another user is fine", async () => {
    const open = await startBroker({ HEARTBEAT: '0,0' });
    try {
      const c = await RawClient.tcp(open.tcpPort!);
      clients.push(c);
      await c.connect({ login: 'pat' });
      for (const destination of ['/topic/any', '/queue/any', '/user/queue/mine', '/user/pat/queue/mine']) {
        c.sendFrame('SUBSCRIBE', { id: destination, destination, receipt: destination });
        assert.equal((await c.expect('RECEIPT')).command, 'RECEIPT');
      }
      c.sendFrame('SEND', { destination: '/user/someone/queue/x', receipt: 'sent' }, 'hi');
      await c.expect('RECEIPT');
      c.sendFrame('SUBSCRIBE', { id: 'spy', destination: '/user/someone/queue/x' });
      assert.match(header(await c.expect('ERROR'), 'message') ?? '', /^FORBIDDEN/);
    } finally {
      await open.stop();
    }
  });
});
