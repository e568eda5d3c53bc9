// An instance's report as the others read it back from Redis: what one instance writes is
// read unchanged, and a report that is missing, not JSON, or has fields of the wrong shape
// reads with those fields empty, never as something the dashboard cannot show.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { NO_COUNTERS, encodeInstanceReport, parseInstanceReport } from '../../src/registry/instances';
import type { InstanceReport } from '../../src/registry/instances';

const report: InstanceReport = {
  instanceId: 'a',
  startedAt: 1000,
  reportedAt: 2000,
  isDegraded: true,
  degradedReason: 'Redis connection lost',
  counters: { connections: 3, sessions: 2, published: { topic: 5 }, delivered: { topic: 9, queue: 1 }, dropped: {}, errors: { KICKED: 1 }, bytesIn: 123, heartbeatTimeouts: 0 },
};

describe('instance reports read back', () => {
  it('reads back what an instance wrote', () => {
    assert.deepEqual(parseInstanceReport('a', encodeInstanceReport(report)), report);
  });

  it('a missing or unreadable report reads as an empty one under the id it was found by', () => {
    const empty = { instanceId: 'b', startedAt: 0, reportedAt: 0, isDegraded: false, degradedReason: null, counters: NO_COUNTERS };
    for (const json of [null, 'not json', '[]', '42', '{}']) assert.deepEqual(parseInstanceReport('b', json), empty, String(json));
  });

  it('fields of the wrong shape read as their empty value', () => {
    const odd = {
      instanceId: 'forged',
      startedAt: 'yesterday',
      reportedAt: Infinity,
      isDegraded: 'yes',
      degradedReason: 7,
      counters: { connections: '3', sessions: 2, published: { topic: 'many', queue: 4 }, delivered: [1], errors: null, bytesIn: -1 },
    };
    assert.deepEqual(parseInstanceReport('c', JSON.stringify(odd)), {
      instanceId: 'c',
      startedAt: 0,
      reportedAt: 0,
      isDegraded: false,
      degradedReason: null,
      counters: { connections: 0, sessions: 2, published: { queue: 4 }, delivered: {}, dropped: {}, errors: {}, bytesIn: -1, heartbeatTimeouts: 0 },
    });
    assert.deepEqual(parseInstanceReport('d', JSON.stringify({ counters: 'lots' })).counters, NO_COUNTERS);
  });
});
