// The flow report between instances: what one instance encodes, another decodes to the same
// report; anything malformed is refused whole, and no sender makes a report live past the cap.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_FLOW_REPORT_TTL_MS, decodeFlowReport, encodeFlowReport } from '../../src/cluster/flow-report';

describe('flow report', () => {
  it('round-trips, the empty report ("nothing waits") included', () => {
    const waiting = new Map([
      ['/topic/quiz', 1000],
      ['/user/alice/queue/news', 2],
    ]);
    assert.deepEqual(decodeFlowReport(encodeFlowReport({ origin: 'b-1', ttlMs: 1500, waiting })), { origin: 'b-1', ttlMs: 1500, waiting });
    assert.deepEqual(decodeFlowReport(encodeFlowReport({ origin: 'b-1', ttlMs: 1500, waiting: new Map() })), { origin: 'b-1', ttlMs: 1500, waiting: new Map() });
  });

  it('caps the time a report is believed', () => {
    assert.equal(decodeFlowReport(encodeFlowReport({ origin: 'b', ttlMs: 10 * MAX_FLOW_REPORT_TTL_MS, waiting: new Map() }))?.ttlMs, MAX_FLOW_REPORT_TTL_MS);
  });

  it('refuses whatever is not a report', () => {
    for (const text of [
      'not json',
      'null',
      '[]',
      '{"ttlMs":1500,"waiting":[]}',
      '{"origin":"b","ttlMs":0,"waiting":[]}',
      '{"origin":"b","ttlMs":"1500","waiting":[]}',
      '{"origin":"b","ttlMs":1500}',
      '{"origin":"b","ttlMs":1500,"waiting":[["/topic/a"]]}',
      '{"origin":"b","ttlMs":1500,"waiting":[["/topic/a",-1]]}',
      '{"origin":"b","ttlMs":1500,"waiting":[[7,1]]}',
      '{"origin":"b","ttlMs":1500,"waiting":[["/topic/a",1,2]]}',
    ]) {
      assert.equal(decodeFlowReport(Buffer.from(text)), undefined, text);
    }
  });
});
