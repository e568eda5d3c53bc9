// The slow-consumer drop log: the first drop at once, then at most one line per interval,
// each with the count since the previous line, and every drop logged in the end.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { DROP_LOG_MESSAGE, DroppedMessageLog } from '../../src/session/dropped-message-log';

function capture(): { lines: Record<string, unknown>[]; logger: pino.Logger } {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { lines, logger };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('DroppedMessageLog', () => {
  it('logs the first drop at once, then one line per interval with the count since the last line', async () => {
    const { lines, logger } = capture();
    const log = new DroppedMessageLog(() => logger, 100);
    log.record('/topic/a');
    assert.equal(lines.length, 1);
    assert.deepEqual([lines[0]!.msg, lines[0]!.droppedMessages, lines[0]!.droppedTotal], [DROP_LOG_MESSAGE, 1, 1]);
    for (let i = 0; i < 498; i++) log.record('/topic/a');
    log.record('/topic/b');
    assert.equal(lines.length, 1, 'nothing more within the interval');
    await sleep(250);
    assert.equal(lines.length, 2, 'the rest once the interval is over, without another drop');
    assert.deepEqual([lines[1]!.droppedMessages, lines[1]!.droppedTotal, lines[1]!.destination], [499, 500, '/topic/b']);
    assert.equal(log.total, 500);
    await sleep(150);
    log.record('/topic/c');
    assert.equal(lines.length, 3, 'a drop after a quiet interval is logged at once');
    assert.equal(
      lines.reduce((sum, l) => sum + (l.droppedMessages as number), 0),
      501,
    );
  });
});

describe('DroppedMessageLog.flush', () => {
  it('logs what is left when the session ends, and nothing when nothing is', () => {
    const { lines, logger } = capture();
    const log = new DroppedMessageLog(() => logger, 60_000);
    log.record('/topic/a'); // logged at once
    log.record('/topic/a');
    log.record('/topic/a'); // waiting for the interval
    log.flush();
    assert.deepEqual(
      lines.map((l) => l.droppedMessages),
      [1, 2],
    );
    log.flush();
    assert.equal(lines.length, 2);
  });
});
