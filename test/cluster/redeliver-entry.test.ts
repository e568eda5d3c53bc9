// The redeliver list entry's TypeScript codec: what it encodes it decodes back, whatever the
// instance id (a '|' in it too), and nothing else reads as an entry. That the Lua codec
// reads the same entries is checked on a real Redis in lua.test.ts.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeRedeliverEntry, encodeRedeliverEntry } from '../../src/cluster/redeliver-entry';

const entryId = fc.tuple(fc.nat(), fc.nat()).map(([ms, seq]) => `${ms}-${seq}`);

describe('redeliver entry codec', () => {
  it('round-trips any entry', () => {
    fc.assert(
      fc.property(entryId, fc.string({ minLength: 1 }), fc.nat(), fc.boolean(), (id, giver, givenAtMs, wasDelivered) => {
        const entry = { entryId: id, giver, givenAtMs, wasDelivered };
        assert.deepEqual(decodeRedeliverEntry(encodeRedeliverEntry(entry)), entry);
      }),
      { numRuns: 500 },
    );
  });

  it('reads nothing else as an entry', () => {
    for (const text of ['', '1-0', '1-0|i|5', '1-0|i|5|2', '1-0||5|1', '|i|5|1', '1-0|i|x|1']) assert.equal(decodeRedeliverEntry(text), undefined, JSON.stringify(text));
  });
});
