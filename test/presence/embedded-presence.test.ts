// Presence in embedded mode (memory store), with raw clients over real sockets: JOIN and
// LEAVE reach the room as ordinary MESSAGEs with the reason the session ended with, a user
// with two sessions joins once and leaves once, the snapshot comes first, members() agrees.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Frame } from '../../src/codec';
import { harness } from '../helpers/harness';
import { header } from '../helpers/raw-client';
import type { RawClient } from '../helpers/raw-client';

const h = harness({ HEARTBEAT: '0,0', PRESENCE_DESTINATIONS: '/topic/room.*,/topic/game.**', PRESENCE_COMPANION_SUFFIX: '.presence' });
const ROOM = '/topic/room.42';

async function join(c: RawClient, destination = ROOM, id = 'r', extra: Record<string, string> = {}): Promise<void> {
  c.sendFrame('SUBSCRIBE', { destination, id, receipt: `sub-${id}`, ...extra });
  await c.waitUntil(() => c.frames.some((f) => f.command === 'RECEIPT' && header(f, 'receipt-id') === `sub-${id}`));
}

/** The next presence MESSAGE (other frames skipped), parsed. */
async function nextEvent(c: RawClient): Promise<{ frame: Frame; body: Record<string, unknown> }> {
  for (;;) {
    const frame = await c.next();
    if (frame.command === 'MESSAGE' && header(frame, 'x-presence') !== undefined) return { frame, body: JSON.parse(frame.body.toString()) as Record<string, unknown> };
  }
}

describe('presence in embedded mode', () => {
  it('join, leave by UNSUBSCRIBE, DISCONNECT, closed socket; two sessions leave once; members() follows', async () => {
    const b = await h.broker();
    const watcher = await h.connected(b, { login: 'watcher' });
    await join(watcher);
    const self = await nextEvent(watcher);
    assert.equal(self.body.type, 'JOIN');
    assert.equal(self.body.userId, 'watcher');

    const alice = await h.connected(b, { login: 'alice' });
    await join(alice);
    const joined = await nextEvent(watcher);
    assert.equal(header(joined.frame, 'x-presence'), 'join');
    assert.equal(header(joined.frame, 'content-type'), 'application/json');
    assert.equal(header(joined.frame, 'destination'), ROOM);
    assert.deepEqual(Object.keys(joined.body), ['type', 'userId', 'roles', 'sessionId', 'reason', 'at', 'seq']);
    assert.equal(joined.body.userId, 'alice');
    assert.equal(typeof joined.body.at, 'number');
    assert.deepEqual((await b.presence.members(ROOM)).map((m) => m.userId).sort(), ['alice', 'watcher']);

    // A second session of alice: no JOIN; the first one leaving: no LEAVE.
    const alice2 = await h.connected(b, { login: 'alice' });
    await join(alice2);
    alice.sendFrame('UNSUBSCRIBE', { id: 'r', receipt: 'u' });
    await alice.expect('RECEIPT');
    await watcher.expectSilence(300);
    assert.deepEqual((await b.presence.members(ROOM)).map((m) => m.userId).sort(), ['alice', 'watcher']);
    // The second one's socket destroyed (a closed tab): one LEAVE, socket-closed.
    alice2.destroy();
    const left = await nextEvent(watcher);
    assert.equal(header(left.frame, 'x-presence'), 'leave');
    assert.deepEqual([left.body.type, left.body.userId, left.body.reason], ['LEAVE', 'alice', 'socket-closed']);
    await watcher.expectSilence(300);
    assert.deepEqual(
      (await b.presence.members(ROOM)).map((m) => m.userId),
      ['watcher'],
    );

    // DISCONNECT: reason disconnect (not unsubscribe, although the session unsubscribes first).
    const bob = await h.connected(b, { login: 'bob' });
    await join(bob);
    assert.equal((await nextEvent(watcher)).body.userId, 'bob');
    bob.sendFrame('DISCONNECT', { receipt: 'bye' });
    const bye = await nextEvent(watcher);
    assert.deepEqual([bye.body.type, bye.body.userId, bye.body.reason], ['LEAVE', 'bob', 'disconnect']);

    // UNSUBSCRIBE: reason unsubscribe.
    const carol = await h.connected(b, { login: 'carol' });
    await join(carol);
    assert.equal((await nextEvent(watcher)).body.userId, 'carol');
    carol.sendFrame('UNSUBSCRIBE', { id: 'r' });
    assert.deepEqual((await nextEvent(watcher)).body.reason, 'unsubscribe');
  });

  it('x-presence-snapshot: the first MESSAGE is the member list, then the live events; the companion gets them too', async () => {
    const b = await h.broker();
    const room = '/topic/game.7.lobby';
    const dave = await h.connected(b, { login: 'dave' });
    await join(dave, room);
    const companion = await h.connected(b, { login: 'ops' });
    await join(companion, `${room}.presence`, 'c');
    const erin = await h.connected(b, { login: 'erin' });
    erin.sendFrame('SUBSCRIBE', { destination: room, id: 's', 'x-presence-snapshot': 'true' });
    const first = await erin.expect('MESSAGE');
    assert.equal(header(first, 'x-presence'), 'snapshot');
    assert.equal(header(first, 'subscription'), 's');
    const snapshot = JSON.parse(first.body.toString()) as { type: string; members: { userId: string; roles: string[]; joinedAt: number }[] };
    assert.equal(snapshot.type, 'SNAPSHOT');
    // The list was read after Erin joined: it has her, and her own JOIN (in it) does not follow.
    assert.deepEqual(
      snapshot.members.map((m) => m.userId),
      ['dave', 'erin'],
    );
    assert.equal(typeof snapshot.members[0]!.joinedAt, 'number');
    const frank = await h.connected(b, { login: 'frank' });
    await join(frank, room);
    assert.equal((await nextEvent(erin)).body.userId, 'frank');
    // The companion destination is not a room (ops did not join) and hears the events.
    const onCompanion = await nextEvent(companion);
    assert.deepEqual([onCompanion.body.type, onCompanion.body.userId, header(onCompanion.frame, 'destination')], ['JOIN', 'erin', `${room}.presence`]);
    assert.deepEqual(
      (await b.presence.members(room)).map((m) => m.userId),
      ['dave', 'erin', 'frank'],
    );
    assert.deepEqual(await b.presence.members('/topic/news'), []);
  });

  it('kicked and logged out: LEAVE says so', async () => {
    const b = await h.broker();
    const watcher = await h.connected(b, { login: 'watcher' });
    await join(watcher);
    await nextEvent(watcher);
    const kicked = await h.connected(b, { login: 'kicked-user' });
    await join(kicked);
    await nextEvent(watcher);
    const leaver = await h.connected(b, { login: 'logged-out-user' });
    await join(leaver);
    await nextEvent(watcher);
    await b.admin.kickSession(header(kicked.frames[0]!, 'session')!);
    const first = await nextEvent(watcher);
    assert.deepEqual([first.body.userId, first.body.reason], ['kicked-user', 'kicked']);
    await b.admin.logoutUser('logged-out-user');
    const second = await nextEvent(watcher);
    assert.deepEqual([second.body.userId, second.body.reason], ['logged-out-user', 'logged-out']);
  });

  it('a client cannot forge a presence event: its x-presence header is dropped', async () => {
    const b = await h.broker();
    const watcher = await h.connected(b, { login: 'watcher' });
    await join(watcher);
    await nextEvent(watcher); // its own JOIN
    const forger = await h.connected(b, { login: 'mallory' });
    forger.sendFrame('SEND', { destination: ROOM, 'x-presence': 'leave', 'X-Presence': 'leave', receipt: 's' }, JSON.stringify({ type: 'LEAVE', userId: 'watcher', reason: 'kicked' }));
    await forger.expect('RECEIPT');
    const frame = await watcher.expect('MESSAGE');
    assert.equal(header(frame, 'user-id'), 'mallory');
    assert.equal(
      frame.headers.some(([name]) => name.toLowerCase() === 'x-presence'),
      false,
    );
  });

  it('a destination that is not a room has no presence messages', async () => {
    const b = await h.broker();
    const a = await h.connected(b, { login: 'a' });
    await join(a, '/topic/news');
    const c = await h.connected(b, { login: 'c' });
    await join(c, '/topic/news');
    c.destroy();
    await a.expectSilence(300);
  });
});
