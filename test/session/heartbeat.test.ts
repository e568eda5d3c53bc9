import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { heartbeatIntervals, parseHeartbeat } from '../../src/session/heartbeat';

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

  it('parses "x,y" and rejects anything else', () => {
    assert.deepEqual(parseHeartbeat('10000,0'), { sendMs: 10000, receiveMs: 0 });
    assert.deepEqual(parseHeartbeat(' 1 , 2 '), { sendMs: 1, receiveMs: 2 });
    for (const bad of ['', '1', '1,2,3', '-1,5', 'a,b', '1.5,2']) assert.equal(parseHeartbeat(bad), undefined, bad);
  });
});
