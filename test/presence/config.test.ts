// PRESENCE_DESTINATIONS and PRESENCE_COMPANION_SUFFIX: read, defaulted, and refused with the
// variable named when a pattern is not a topic (a JOIN on a queue would reach one consumer).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from '../../src/config';
import { RoomMatcher } from '../../src/presence/presence';

describe('presence settings', () => {
  it('default: no rooms', () => {
    const config = loadConfig({});
    assert.deepEqual(config.presenceDestinations, []);
    assert.equal(config.presenceCompanionSuffix, undefined);
    assert.equal(new RoomMatcher(config.presenceDestinations, undefined).isEnabled, false);
  });

  it('patterns with * and **, a companion suffix that is never a room', () => {
    const config = loadConfig({ PRESENCE_DESTINATIONS: '/topic/room.*, /topic/game.**', PRESENCE_COMPANION_SUFFIX: '.presence' });
    assert.deepEqual(config.presenceDestinations, ['/topic/room.*', '/topic/game.**']);
    const rooms = new RoomMatcher(config.presenceDestinations, config.presenceCompanionSuffix);
    assert.equal(rooms.isRoom('/topic/room.42'), true);
    assert.equal(rooms.isRoom('/topic/room.42/x'), false);
    assert.equal(rooms.isRoom('/topic/game.7/lobby'), true);
    assert.equal(rooms.isRoom('/topic/room.42.presence'), false);
    assert.equal(rooms.companionOf('/topic/room.42'), '/topic/room.42.presence');
  });

  it('a pattern outside TOPIC_PREFIX or not a destination is refused, naming the variable', () => {
    for (const value of ['/queue/room.*', 'room.*']) {
      assert.throws(
        () => loadConfig({ PRESENCE_DESTINATIONS: value }),
        (e: unknown) => e instanceof ConfigError && e.variable === 'PRESENCE_DESTINATIONS',
        value,
      );
    }
    assert.throws(
      () => loadConfig({ PRESENCE_COMPANION_SUFFIX: 'a b' }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'PRESENCE_COMPANION_SUFFIX',
    );
  });
});
