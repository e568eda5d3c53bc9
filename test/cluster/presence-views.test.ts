// PresenceViews alone (a pure module: what to read and where to deliver are handed in): the
// member list an instance's watchers were told, corrected after faults — a LEAVE Redis forgot
// told only where the list still has the user, a difference told only once it lasted the
// confirm period, a new watcher's list taken from the instance's own once it caught up.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import type { Message } from '../../src/broker/message';
import { encodeEnvelope, decodeEnvelope } from '../../src/cluster/envelope';
import { PresenceViews } from '../../src/cluster/presence-views';
import type { RoomRead } from '../../src/cluster/presence-views';
import { REPAIR_HEADER, RoomMatcher, presenceEventHeaders } from '../../src/presence/presence';
import { until } from '../helpers/until';

const ROOM = '/topic/room.v';
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Delivered {
  type: string;
  userId: string;
  reason: string | null;
  repair: boolean;
}

function readOf(seq: number, users: string[]): RoomRead {
  return { seq, sessions: new Map(users.map((u) => [`sid-${u}`, { userId: u, roles: [], joinedAt: 1 }])) };
}

function envelope(type: 'JOIN' | 'LEAVE', userId: string, seq: number | undefined, reason: string | null = null) {
  const body = { type, userId, roles: [], sessionId: `sid-${userId}`, reason, at: 2, ...(seq === undefined ? {} : { seq }) };
  const headers = seq === undefined ? [...presenceEventHeaders(type), [REPAIR_HEADER, 'true'] as [string, string]] : presenceEventHeaders(type);
  return decodeEnvelope(encodeEnvelope({ origin: 'presence@x', messageId: `m-${userId}-${seq}`, destination: ROOM, routeKey: ROOM, headers, body: Buffer.from(JSON.stringify(body)) }));
}

function setUp(initial: RoomRead, confirmMs = 50) {
  let redis = initial;
  let seqNow: number | undefined = initial.seq;
  const delivered: Delivered[] = [];
  const views = new PresenceViews({
    read: async () => redis,
    currentSeq: async () => seqNow,
    deliverLocal: (m: Message) => {
      const body = JSON.parse(m.body.toString()) as { type: string; userId: string; reason: string | null };
      delivered.push({ type: body.type, userId: body.userId, reason: body.reason, repair: m.headers.some(([n, v]) => n === REPAIR_HEADER && v === 'true') });
    },
    isFilling: () => false,
    catchUp: () => undefined,
    matcher: new RoomMatcher(['/topic/room.*'], undefined),
    confirmMs,
    messageIdPrefix: 't',
    logger: pino({ level: 'silent' }),
  });
  return {
    views,
    delivered,
    setRedis: (read: RoomRead) => {
      redis = read;
      seqNow = read.seq === 0 ? undefined : read.seq;
    },
  };
}

describe('PresenceViews', () => {
  it('a LEAVE Redis forgot is told, with its reason, only where the list has the user, once', async () => {
    const { views, delivered } = setUp(readOf(10, ['ann', 'bob']));
    views.setInterest(ROOM, true);
    await sleep(10);
    views.onRepair(envelope('LEAVE', 'bob', undefined, 'socket-closed'));
    views.onRepair(envelope('LEAVE', 'bob', undefined, 'socket-closed')); // the companion's copy, or a repeat
    views.onRepair(envelope('LEAVE', 'cat', undefined, 'socket-closed')); // never listed here
    assert.deepEqual(delivered, [{ type: 'LEAVE', userId: 'bob', reason: 'socket-closed', repair: true }]);
  });

  it('a difference with Redis is corrected only after it lasted the confirm period; then the lists agree', async () => {
    const { views, delivered, setRedis } = setUp(readOf(10, ['ann', 'bob']));
    views.setInterest(ROOM, true);
    await sleep(10);
    setRedis(readOf(0, ['ann', 'dan'])); // Redis restarted empty: bob gone with it, dan put back by its instance
    views.auditAll();
    await until(() => views.stats.audits >= 1, 'the first look');
    assert.equal(delivered.length, 0, 'nothing on the first look');
    await until(() => delivered.length === 2, 'the corrections');
    assert.deepEqual(delivered.map((d) => `${d.type}:${d.userId}:${d.reason}:${d.repair}`).sort(), ['JOIN:dan:null:true', 'LEAVE:bob:instance-lost:true']);
    const listed = await views.snapshot(ROOM, async () => assert.fail('read from Redis'));
    assert.deepEqual(listed.members.map((m) => m.userId).sort(), ['ann', 'dan']);
  });

  it('a difference that goes away before the confirm period (an instance putting its members back) is not told', async () => {
    const { views, delivered, setRedis } = setUp(readOf(10, ['ann', 'bob']), 300);
    views.setInterest(ROOM, true);
    await sleep(10);
    setRedis(readOf(0, ['ann'])); // bob's instance has not repaired yet
    views.auditAll();
    await until(() => views.stats.audits >= 1, 'the first look');
    setRedis(readOf(0, ['ann', 'bob'])); // now it has
    await until(() => views.stats.audits >= 3, 'two more looks');
    assert.equal(delivered.length, 0);
  });

  it("a new watcher's list waits for this instance to reach the room's number in Redis (its own JOIN included)", async () => {
    const { views, setRedis } = setUp(readOf(10, ['ann']));
    views.setInterest(ROOM, true);
    await sleep(10);
    setRedis(readOf(11, ['ann', 'eve'])); // eve's JOIN is decided; its event is on its way
    const pending = views.snapshot(ROOM, async () => assert.fail('read from Redis'));
    await sleep(20);
    views.onDelivered(envelope('JOIN', 'eve', 11));
    const listed = await pending;
    assert.equal(listed.seq, 11);
    assert.deepEqual(listed.members.map((m) => m.userId).sort(), ['ann', 'eve']);
  });

  it('a room with no local subscriber keeps no list (its events do not come here): a late snapshot reads Redis, the next subscriber starts from Redis', async () => {
    const { views, setRedis } = setUp(readOf(10, ['ann', 'bob']));
    views.setInterest(ROOM, true);
    await sleep(10);
    views.setInterest(ROOM, false); // the last subscriber left; bob's LEAVE will not reach this instance
    setRedis(readOf(11, ['ann']));
    let fromRedis = 0;
    const late = await views.snapshot(ROOM, async () => {
      fromRedis++;
      return { seq: 11, members: [{ userId: 'ann', roles: [], joinedAt: 1 }] };
    });
    assert.equal(fromRedis, 1, 'read from Redis');
    assert.deepEqual(
      late.members.map((m) => m.userId),
      ['ann'],
    );
    views.setInterest(ROOM, true);
    const listed = await views.snapshot(ROOM, async () => assert.fail('read from Redis'));
    assert.deepEqual(
      listed.members.map((m) => m.userId),
      ['ann'],
      'not the list kept before',
    );
  });

  it("a list read before the room's first decision is read again at its first event: a JOIN published before this instance subscribed to the channel is not skipped", async () => {
    const { views, setRedis } = setUp(readOf(0, [])); // a new room: no counter, nobody in it
    views.setInterest(ROOM, true);
    await sleep(10);
    // w1's JOIN (534) was published before the channel subscription held: it never comes here.
    // w0's JOIN (535) comes; Redis lists both.
    setRedis(readOf(535, ['w0', 'w1']));
    views.onDelivered(envelope('JOIN', 'w0', 535));
    const listed = await views.snapshot(ROOM, async () => assert.fail('read from Redis'));
    assert.equal(listed.seq, 535);
    assert.deepEqual(listed.members.map((m) => m.userId).sort(), ['w0', 'w1'], 'the list does not skip w1');
  });

  it('a hole the sequencer did not fill is audited and corrected for the watchers here', async () => {
    const { views, delivered, setRedis } = setUp(readOf(10, ['ann']));
    views.setInterest(ROOM, true);
    await sleep(10);
    setRedis(readOf(12, ['ann', 'bob', 'cat'])); // bob's JOIN (11) never came here
    views.onDelivered(envelope('JOIN', 'cat', 12));
    await until(() => delivered.length > 0, 'the correction');
    assert.deepEqual(delivered, [{ type: 'JOIN', userId: 'bob', reason: null, repair: true }]);
  });

  it('a list that could not be read (Redis away) is read again, not left unread until an audit', async () => {
    let reads = 0;
    const views = new PresenceViews({
      read: async () => {
        if (++reads === 1) throw new Error('Connection is closed.');
        return readOf(10, ['ann']);
      },
      currentSeq: async () => 10,
      deliverLocal: () => undefined,
      isFilling: () => false,
      catchUp: () => undefined,
      matcher: new RoomMatcher(['/topic/room.*'], undefined),
      confirmMs: 50,
      messageIdPrefix: 't',
      logger: pino({ level: 'silent' }),
    });
    views.setInterest(ROOM, true);
    await until(() => reads === 2, 'a second read');
    const listed = await views.snapshot(ROOM, async () => assert.fail('read from Redis'));
    assert.deepEqual(
      listed.members.map((m) => m.userId),
      ['ann'],
    );
  });

  it('a JOIN of a user listed with another session (its LEAVE lost with Redis) is preceded by that LEAVE, told here first', async () => {
    const { views, delivered } = setUp(readOf(10, ['ann']));
    views.setInterest(ROOM, true);
    await sleep(10);
    // ann's session sid-ann died with its instance; Redis restarted empty before the reap. ann comes back.
    const rejoin = envelope('JOIN', 'ann', 11);
    const body = JSON.parse(rejoin.body.toString()) as Record<string, unknown>;
    views.onDelivered({ ...rejoin, body: Buffer.from(JSON.stringify({ ...body, sessionId: 'sid-ann-2' })) });
    assert.deepEqual(delivered, [{ type: 'LEAVE', userId: 'ann', reason: 'instance-lost', repair: true }]);
    views.onDelivered(envelope('JOIN', 'ann', 11)); // a repeat (the companion's copy) tells nothing more
    assert.equal(delivered.length, 1);
  });

  it('a LEAVE Redis forgot for a session the user has replaced since (its new JOIN told here) is not told', async () => {
    const { views, delivered } = setUp(readOf(10, []));
    views.setInterest(ROOM, true);
    await sleep(10);
    // bob's old session left while Redis was away; bob is back with a new session, whose JOIN came here.
    const join = envelope('JOIN', 'bob', 11);
    const body = JSON.parse(join.body.toString()) as Record<string, unknown>;
    views.onDelivered({ ...join, body: Buffer.from(JSON.stringify({ ...body, sessionId: 'sid-bob-2' })) });
    views.onRepair(envelope('LEAVE', 'bob', undefined, 'socket-closed')); // about sid-bob, the old one
    assert.deepEqual(delivered, [], 'bob stays listed');
    const listed = await views.snapshot(ROOM, async () => assert.fail('read from Redis'));
    assert.deepEqual(
      listed.members.map((m) => m.userId),
      ['bob'],
    );
  });
});
