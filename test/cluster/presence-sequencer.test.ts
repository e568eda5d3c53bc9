// PresenceSequencer alone: events in order pass, a repeat is dropped, a hole is filled from
// the log in order (what arrives meanwhile merged in), a resync after a reconnect delivers a
// trailing event pub/sub lost, and a hole the log cannot fill is accepted.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { encodeEnvelope } from '../../src/cluster/envelope';
import type { Envelope } from '../../src/cluster/envelope';
import { PresenceSequencer, presenceSeqOfEnvelope } from '../../src/cluster/presence-sequencer';
import { presenceEventHeaders } from '../../src/presence/presence';

const ROOM = '/topic/room.1';

function event(seq: number, type: 'JOIN' | 'LEAVE' = 'JOIN'): Envelope {
  const body = Buffer.from(JSON.stringify({ type, userId: `u${seq}`, roles: [], sessionId: `s${seq}`, reason: null, at: 1, seq }));
  return { origin: 'presence@x', messageId: `m${seq}`, destination: ROOM, routeKey: ROOM, headers: presenceEventHeaders(type), body };
}

function harness(log: Envelope[]) {
  const delivered: number[] = [];
  let reads = 0;
  const sequencer = new PresenceSequencer({
    recentEvents: async () => {
      reads++;
      return log.map((e) => encodeEnvelope(e));
    },
    deliver: (e) => delivered.push(presenceSeqOfEnvelope(e) ?? -1),
    logger: pino({ level: 'silent' }),
  });
  return { sequencer, delivered, reads: () => reads };
}

const aMoment = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 10));

describe('PresenceSequencer', () => {
  it('passes events in order and other messages untouched; drops a repeat', () => {
    const { sequencer, delivered, reads } = harness([]);
    sequencer.onEnvelope(event(10));
    sequencer.onEnvelope(event(11));
    sequencer.onEnvelope(event(11));
    sequencer.onEnvelope({ ...event(12), headers: [['content-type', 'text/plain']] });
    assert.deepEqual(delivered, [10, 11, -1]);
    assert.equal(sequencer.stats.repeats, 1);
    assert.equal(reads(), 0, 'no hole, no read');
  });

  it('fills a hole from the log, in order, with what arrives meanwhile merged in', async () => {
    const { sequencer, delivered } = harness([event(10), event(11), event(12), event(13)]);
    sequencer.onEnvelope(event(10));
    sequencer.onEnvelope(event(13)); // 11 and 12 were lost
    sequencer.onEnvelope(event(14)); // arrives while the log is read
    await aMoment();
    assert.deepEqual(delivered, [10, 11, 12, 13, 14]);
    assert.equal(sequencer.stats.filled, 2);
    sequencer.onEnvelope(event(12)); // a late copy
    assert.deepEqual(delivered, [10, 11, 12, 13, 14]);
  });

  it('puts two events that arrive swapped back in order', async () => {
    const { sequencer, delivered } = harness([event(1), event(2), event(3)]);
    sequencer.onEnvelope(event(1));
    sequencer.onEnvelope(event(3));
    sequencer.onEnvelope(event(2));
    await aMoment();
    assert.deepEqual(delivered, [1, 2, 3]);
  });

  it('after a reconnect, delivers a trailing event pub/sub lost', async () => {
    const { sequencer, delivered } = harness([event(5), event(6, 'LEAVE')]);
    sequencer.onEnvelope(event(5));
    sequencer.resyncAll();
    await aMoment();
    assert.deepEqual(delivered, [5, 6]);
  });

  it('after a reconnect whose log read failed (the command connection dropped meanwhile), reads again and delivers the trailing event', async () => {
    const log = [event(5), event(6, 'LEAVE')];
    const delivered: number[] = [];
    let reads = 0;
    const sequencer = new PresenceSequencer({
      recentEvents: async () => {
        if (++reads === 1) throw new Error("Stream isn't writeable");
        return log.map((e) => encodeEnvelope(e));
      },
      deliver: (e) => delivered.push(presenceSeqOfEnvelope(e) ?? -1),
      logger: pino({ level: 'silent' }),
    });
    sequencer.onEnvelope(event(5));
    sequencer.resyncAll();
    await aMoment();
    assert.deepEqual(delivered, [5], 'the first read failed');
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(reads, 2, 'read again after a back-off');
    assert.deepEqual(delivered, [5, 6]);
  });

  it('a room tracked from its current number fills a hole even before its first event here', async () => {
    const { sequencer, delivered } = harness([event(7), event(8, 'LEAVE')]);
    sequencer.track(ROOM, 6);
    sequencer.resyncAll(); // the subscriber came back: 7 and 8 were lost
    await aMoment();
    assert.deepEqual(delivered, [7, 8]);
  });

  it('accepts a hole the log cannot fill (the counter restarted), and forgets a room with no subscriber', async () => {
    const { sequencer, delivered } = harness([]);
    sequencer.onEnvelope(event(5));
    sequencer.onEnvelope(event(900));
    await aMoment();
    assert.deepEqual(delivered, [5, 900]);
    sequencer.forget(ROOM);
    sequencer.onEnvelope(event(3));
    assert.deepEqual(delivered, [5, 900, 3], 'a forgotten room starts over');
  });
});
