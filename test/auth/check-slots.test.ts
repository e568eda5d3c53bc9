// The password-check pool's fairness: waiters are served round robin between clients, each
// client waits with a bounded share, and a full waiting room makes way for a quieter client.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CheckSlots } from '../../src/auth/check-slots';

describe('CheckSlots', () => {
  it('serves waiting clients in turn, bounds each client, and makes room for a quiet one', async () => {
    const slots = new CheckSlots(1, 4, 3);
    const served: string[] = [];
    const outcome = (client: string, label: string): Promise<string> =>
      slots.acquire(client).then(
        () => {
          served.push(label);
          return 'ran';
        },
        (error: { code: string }) => error.code,
      );
    await slots.acquire('a'); // runs now
    const a = [outcome('a', 'a1'), outcome('a', 'a2'), outcome('a', 'a3')];
    assert.equal(await outcome('a', 'a4'), 'SERVER_BUSY', "past a's share of the waiting room");
    const b = outcome('b', 'b1'); // the waiting room is full now (4)
    const c = outcome('c', 'c1'); // a quiet client: a's newest waiter gives way
    assert.equal(await a[2], 'SERVER_BUSY');
    for (let i = 0; i < 4; i++) {
      slots.release();
      await new Promise((resolve) => setImmediate(resolve));
    }
    assert.deepEqual(served, ['a1', 'b1', 'c1', 'a2'], 'one turn per client');
    assert.deepEqual(await Promise.all([a[0], a[1], b, c]), ['ran', 'ran', 'ran', 'ran']);
    slots.release();
    await slots.acquire('d'); // everything was given back: runs at once
  });
});
