import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { heartbeatIntervals, heartbeatOffer, parseHeartbeat } from '../../src/session/heartbeat';

describe('heart-beat negotiation (STOMP 1.2 arithmetic)', () => {
  const server = { sendMs: 10000, receiveMs: 10000 };

  it('takes the larger of what one side can send and the other wants', () => {
    assert.deepEqual(heartbeatIntervals({ sendMs: 4000, receiveMs: 20000 }, server), { sendEveryMs: 20000, expectEveryMs: 10000 });
    assert.deepEqual(heartbeatIntervals({ sendMs: 30000, receiveMs: 5000 }, server), { sendEveryMs: 10000, expectEveryMs: 30000 });
  });

  it('a zero on either side turns that direction off', () => {
    assert.deepEqual(heartbeatIntervals({ sendMs: 0, receiveMs: 5000 }, server), { sendEveryMs: 10000, expectEveryMs: 0 });
    assert.deepEqual(heartbeatIntervals({ sendMs: 5000, receiveMs: 0 }, server), { sendEveryMs: 0, expectEveryMs: 10000 });
    assert.deepEqual(heartbeatIntervals({ sendMs: 5000, receiveMs: 5000 }, { sendMs: 0, receiveMs: 0 }), { sendEveryMs: 0, expectEveryMs: 0 });
  });

  it('the offer meets a client that wants faster beats, down to the minimum; CONNECTED and intervals agree', () => {
    const cases: [client: [number, number], offer: [number, number], sendEveryMs: number, expectEveryMs: number][] = [
      [[1000, 1000], [1000, 1000], 1000, 1000], // stompjs configured for 1 s: 1 s both ways
      [[10000, 10000], [10000, 10000], 10000, 10000], // stompjs defaults: as before
      [[0, 300], [300, 10000], 300, 0], // wants to hear every 300 ms, never beats itself
      [[500, 0], [10000, 500], 0, 500],
      [[20, 50], [100, 100], 100, 100], // not below HEARTBEAT_MIN_MS (100)
      [[30000, 60000], [10000, 10000], 60000, 30000], // slower than our setting: the spec's max() as before
    ];
    for (const [[cx, cy], [sx, sy], sendEveryMs, expectEveryMs] of cases) {
      const client = { sendMs: cx, receiveMs: cy };
      const offer = heartbeatOffer(client, server, 100);
      assert.deepEqual(offer, { sendMs: sx, receiveMs: sy }, `offer for ${cx},${cy}`);
      // The client combines CONNECTED's values with its own by the same rule.
      assert.deepEqual(heartbeatIntervals(client, offer), { sendEveryMs, expectEveryMs }, `intervals for ${cx},${cy}`);
    }
  });

  it('a zero in our setting keeps that direction off whatever the client asks', () => {
    const offer = heartbeatOffer({ sendMs: 1000, receiveMs: 1000 }, { sendMs: 0, receiveMs: 5000 }, 100);
    assert.deepEqual(offer, { sendMs: 0, receiveMs: 1000 });
    assert.deepEqual(heartbeatIntervals({ sendMs: 1000, receiveMs: 1000 }, offer), { sendEveryMs: 0, expectEveryMs: 1000 });
  });

  it('an operator setting below the minimum stands', () => {
    assert.deepEqual(heartbeatOffer({ sendMs: 20, receiveMs: 20 }, { sendMs: 50, receiveMs: 50 }, 100), { sendMs: 50, receiveMs: 50 });
  });

  it('parses "x,y" and rejects anything else', () => {
    assert.deepEqual(parseHeartbeat('10000,0'), { sendMs: 10000, receiveMs: 0 });
    assert.deepEqual(parseHeartbeat(' 1 , 2 '), { sendMs: 1, receiveMs: 2 });
    for (const bad of ['', '1', '1,2,3', '-1,5', 'a,b', '1.5,2']) assert.equal(parseHeartbeat(bad), undefined, bad);
  });
});
