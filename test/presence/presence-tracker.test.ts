// The tracker follows this instance's sessions only, whatever the reason they end with: a
// session of another instance reported lost by this one's reaper (`instance-lost`) is not
// taken for a local one, and a local session closed because this instance was reaped
// (`instance-fenced`) leaves its rooms, told as `instance-lost`, exactly once.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import type { Message } from '../../src/broker/message';
import { MemoryPresenceStore } from '../../src/presence/memory-presence';
import { RoomMatcher } from '../../src/presence/presence';
import type { PresenceEventBody } from '../../src/presence/presence';
import { PresenceTracker } from '../../src/presence/presence-tracker';
import { LifecycleEvents } from '../../src/session/events';
import type { DisconnectReason, SessionInfo } from '../../src/session/events';

const ROOM = '/topic/room.1';

function setUp(): { events: LifecycleEvents; told: PresenceEventBody[]; tracker: PresenceTracker } {
  const events = new LifecycleEvents();
  const told: PresenceEventBody[] = [];
  const matcher = new RoomMatcher(['/topic/room.*'], undefined);
  const store = new MemoryPresenceStore((m: Message) => told.push(JSON.parse(m.body.toString()) as PresenceEventBody), matcher, 't');
  const tracker = new PresenceTracker({ events, store, matcher, logger: pino({ level: 'silent' }), messageIdPrefix: 't' });
  return { events, told, tracker };
}

const info = (sessionId: string, userId: string): SessionInfo => ({ sessionId, userId, roles: [], isAnonymous: false, transport: 'tcp', remoteAddress: '127.0.0.1:1', version: '1.2', connectedAt: 0 });
const subscribe = (events: LifecycleEvents, session: SessionInfo): void => void events.emit('subscribe', { session, subscriptionId: '1', destination: ROOM, ackMode: 'auto' });
const disconnect = (events: LifecycleEvents, session: SessionInfo, reason: DisconnectReason): void => void events.emit('disconnect', { session, reason });

describe('PresenceTracker and the reasons a session ends with', () => {
  it("a dead instance's session reported lost here is not a local one: no LEAVE from this tracker", async () => {
    const { events, told, tracker } = setUp();
    const local = info('s-local', 'ann');
    subscribe(events, local);
    await tracker.whenIdle();
    disconnect(events, { ...info('s-remote', 'ann'), version: undefined }, 'instance-lost');
    await tracker.whenIdle();
    assert.deepEqual(
      told.map((e) => `${e.type}:${e.userId}`),
      ['JOIN:ann'],
    );
    assert.deepEqual(
      (await tracker.members(ROOM)).map((m) => m.userId),
      ['ann'],
      'the local session keeps ann in the room',
    );
  });

  it('a local session closed because this instance was reaped leaves as instance-lost, once, even if the reaper reports it too', async () => {
    const { events, told, tracker } = setUp();
    const fenced = info('s-fenced', 'bob');
    subscribe(events, fenced);
    await tracker.whenIdle();
    disconnect(events, fenced, 'instance-fenced');
    disconnect(events, fenced, 'instance-lost'); // the reap of this instance's old generation reports it as well
    await tracker.whenIdle();
    assert.deepEqual(
      told.map((e) => `${e.type}:${e.userId}:${e.reason}`),
      ['JOIN:bob:null', 'LEAVE:bob:instance-lost'],
    );
    assert.deepEqual(await tracker.members(ROOM), []);
  });
});
