// The Backlog against an array doing the same operations (fast-check): a circular buffer
// that grows, shrinks and wraps must keep every item, in order, whatever the sequence.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { Backlog } from '../../src/broker/backlog';

type Operation = { push: number } | { pushFront: number[] } | { shift: true } | { takeAll: true };

const operation: fc.Arbitrary<Operation> = fc.oneof(
  { weight: 5, arbitrary: fc.integer().map((n) => ({ push: n })) },
  { weight: 2, arbitrary: fc.array(fc.integer(), { maxLength: 40 }).map((items) => ({ pushFront: items })) },
  { weight: 5, arbitrary: fc.constant({ shift: true as const }) },
  { weight: 1, arbitrary: fc.constant({ takeAll: true as const }) },
);

describe('Backlog', () => {
  it('behaves as an array: push to the back, put in front, take from the front, oldest first', () => {
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 400 }), (operations) => {
        const backlog = new Backlog<number>();
        const model: number[] = [];
        for (const op of operations) {
          if ('push' in op) {
            backlog.push(op.push);
            model.push(op.push);
          } else if ('pushFront' in op) {
            backlog.pushFront(op.pushFront);
            model.unshift(...op.pushFront);
          } else if ('shift' in op) {
            assert.equal(backlog.shift(), model.shift());
          } else {
            assert.deepEqual(backlog.takeAll(), model.splice(0));
          }
          assert.equal(backlog.length, model.length);
          assert.equal(backlog.peek(), model[0]);
          assert.equal(backlog.at(model.length - 1), model[model.length - 1]);
        }
        assert.deepEqual([...backlog], model);
        assert.equal(backlog.at(-1), undefined);
        assert.equal(backlog.at(model.length), undefined);
      }),
      { numRuns: 300 },
    );
  });

  it('grows past 10,000 items and shrinks back as they are taken, keeping their order', () => {
    const backlog = new Backlog<number>();
    for (let i = 0; i < 10_000; i++) backlog.push(i);
    backlog.pushFront([-2, -1]);
    for (let expected = -2; expected < 10_000; expected++) assert.equal(backlog.shift(), expected);
    assert.equal(backlog.length, 0);
    assert.equal(backlog.shift(), undefined);
  });
});
