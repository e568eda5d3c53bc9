// Decoder behaviour the corpus cannot show: flow control (pause/resume), the version switch
// between frames, the failed state, and the listener contract.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DEFAULT_LIMITS, Decoder, FrameError, SharedByteBudget } from '../../src/codec';
import type { DecoderOptions, Frame } from '../../src/codec';

function send(body: string, extraHeaders = ''): string {
  return `SEND\ndestination:/queue/a\n${extraHeaders}\n${body}\0`;
}

/** A decoder that records every frame body (as text) and heart-beat in `events`. */
function recordingDecoder(options: DecoderOptions = {}, onFrame?: (frame: Frame, decoder: Decoder) => void) {
  const events: string[] = [];
  const frames: Frame[] = [];
  const decoder: Decoder = new Decoder((frame) => {
    events.push(`${frame.command}:${frame.body.toString('utf8')}`);
    frames.push(frame);
    onFrame?.(frame, decoder);
  }, options);
  decoder.setHeartbeatListener(() => events.push('heartbeat'));
  return { decoder, events, frames };
}

test('pause() from inside onFrame holds the following frames until resume()', () => {
  const { decoder, events } = recordingDecoder({}, (frame, d) => {
    if (frame.body.toString() === 'one') d.pause();
  });
  decoder.push(Buffer.from(send('one') + '\n' + send('two') + send('three')));
  assert.deepEqual(events, ['SEND:one']);
  assert.ok(decoder.bufferedBytes > 0, 'the rest stays buffered');

  decoder.push(Buffer.from(send('four')));
  assert.deepEqual(events, ['SEND:one'], 'bytes pushed while paused are buffered, not decoded');

  decoder.resume();
  assert.deepEqual(events, ['SEND:one', 'heartbeat', 'SEND:two', 'SEND:three', 'SEND:four']);
  assert.equal(decoder.bufferedBytes, 0);
});

test('pause() before any input: nothing comes out until resume()', () => {
  const { decoder, events } = recordingDecoder();
  decoder.pause();
  decoder.push(Buffer.from(send('a')));
  decoder.push(Buffer.from(send('b')));
  assert.deepEqual(events, []);
  decoder.resume();
  assert.deepEqual(events, ['SEND:a', 'SEND:b']);
});

test('a frame split across pushes made while paused completes on resume()', () => {
  const { decoder, events } = recordingDecoder({}, (frame, d) => {
    if (frame.body.toString() === 'first') d.pause();
  });
  const second = Buffer.from(send('second', 'content-length:6\n'));
  decoder.push(Buffer.concat([Buffer.from(send('first')), second.subarray(0, 10)]));
  decoder.push(second.subarray(10, 30));
  decoder.push(second.subarray(30));
  assert.deepEqual(events, ['SEND:first']);
  decoder.resume();
  assert.deepEqual(events, ['SEND:first', 'SEND:second']);
});

test('resume() called from inside onFrame continues the running loop, in order, without re-entering onFrame', () => {
  let depth = 0;
  let maxDepth = 0;
  const { decoder, events } = recordingDecoder({}, (frame, d) => {
    depth++;
    maxDepth = Math.max(maxDepth, depth);
    if (frame.body.toString() === 'b') {
      // A synchronous step (say, an authenticator answering at once): pause, then resume at once.
      d.pause();
      d.resume();
      events.push('after resume() inside onFrame');
    }
    depth--;
  });
  decoder.pause();
  decoder.push(Buffer.from(send('a') + send('b') + send('c') + send('d')));
  assert.deepEqual(events, []);
  decoder.resume();
  assert.deepEqual(events, ['SEND:a', 'SEND:b', 'after resume() inside onFrame', 'SEND:c', 'SEND:d']);
  assert.equal(maxDepth, 1, 'onFrame is never re-entered');
});

test('pause() then a later resume() from another frame-free context (async authentication)', async () => {
  const { decoder, events } = recordingDecoder({}, (frame, d) => {
    if (frame.command === 'CONNECT') d.pause();
  });
  decoder.push(Buffer.from('CONNECT\naccept-version:1.2\nhost:h\n\n\0' + send('early')));
  assert.deepEqual(events, ['CONNECT:']);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(events, ['CONNECT:'], 'still paused after a tick');
  decoder.resume();
  assert.deepEqual(events, ['CONNECT:', 'SEND:early']);
});

test('resume() surfaces a FrameError in input buffered while paused', () => {
  const { decoder, events } = recordingDecoder();
  decoder.pause();
  decoder.push(Buffer.from(send('ok') + 'send\n\n\0'));
  assert.deepEqual(events, []);
  assert.throws(
    () => decoder.resume(),
    (err: unknown) => err instanceof FrameError && err.code === 'UNKNOWN_COMMAND',
  );
  assert.deepEqual(events, ['SEND:ok']);
  assert.equal(decoder.isFailed, true);
});

test('resume() without pause() is a no-op', () => {
  const { decoder, events } = recordingDecoder();
  decoder.resume();
  decoder.push(Buffer.from(send('x')));
  decoder.resume();
  assert.deepEqual(events, ['SEND:x']);
});

test('decoder.version set in onFrame applies to the next frame of the same chunk', () => {
  const values: string[] = [];
  const decoder = new Decoder((frame) => {
    if (frame.command === 'CONNECT') {
      decoder.version = '1.0';
      return;
    }
    values.push(frame.headers.find(([name]) => name === 'k')![1]);
    decoder.version = '1.2';
  });
  decoder.push(
    Buffer.from(
      'CONNECT\naccept-version:1.0\nhost:h\n\n\0' +
        'SEND\ndestination:/q\nk:a\\cb\n\n\0' + // read as 1.0: literal
        'SEND\ndestination:/q\nk:a\\cb\n\n\0', // read as 1.2: unescaped
    ),
  );
  assert.deepEqual(values, ['a\\cb', 'a:b']);
});

test('switching to 1.1 in onFrame makes \\r in the next frame of the same chunk a BAD_ESCAPE', () => {
  const { decoder, events } = recordingDecoder({}, (_frame, d) => {
    d.version = '1.1';
  });
  assert.throws(
    () => decoder.push(Buffer.from(send('first', 'k:a\\rb\n') + send('second', 'k:a\\rb\n'))),
    (err: unknown) => err instanceof FrameError && err.code === 'BAD_ESCAPE',
  );
  assert.deepEqual(events, ['SEND:first'], 'the first frame was still read as 1.2');
});

test('a failed decoder ignores further input and stays failed', () => {
  const { decoder, events } = recordingDecoder();
  assert.equal(decoder.isFailed, false);
  assert.throws(
    () => decoder.push(Buffer.from('SEND\nno colon here\n\n\0')),
    (err: unknown) => err instanceof FrameError && err.code === 'MALFORMED_HEADER',
  );
  assert.equal(decoder.isFailed, true);
  const bufferedAtFailure = decoder.bufferedBytes;
  decoder.push(Buffer.from('\n' + send('after')));
  decoder.push(Buffer.from('garbage\n'));
  assert.equal(decoder.bufferedBytes, bufferedAtFailure, 'nothing more is buffered');
  decoder.pause();
  decoder.resume();
  assert.deepEqual(events, []);
  assert.equal(decoder.isFailed, true);
});

test('a failure in the middle of a chunk delivers the frames before it, then nothing', () => {
  const { decoder, events } = recordingDecoder();
  assert.throws(() => decoder.push(Buffer.from(send('one') + '\n' + send('two', 'k:\\x\n') + send('three'))), FrameError);
  assert.deepEqual(events, ['SEND:one', 'heartbeat']);
});

test('the FrameError carries its code, a message and the name FrameError', () => {
  const decoder = new Decoder(() => {}, { limits: { maxHeaders: 1 } });
  try {
    decoder.push(Buffer.from('SEND\na:1\nb:2\n\n\0'));
    assert.fail('expected a FrameError');
  } catch (err) {
    assert.ok(err instanceof FrameError);
    assert.ok(err instanceof Error);
    assert.equal(err.code, 'TOO_MANY_HEADERS');
    assert.equal(err.name, 'FrameError');
    assert.match(err.message, /1 headers/);
  }
});

test('an exception thrown by onFrame propagates and is not turned into a FrameError', () => {
  const decoder = new Decoder(() => {
    throw new RangeError('handler bug');
  });
  assert.throws(() => decoder.push(Buffer.from(send('x'))), RangeError);
});

test('heart-beats without a listener are skipped silently', () => {
  const frames: Frame[] = [];
  const decoder = new Decoder((frame) => frames.push(frame));
  decoder.push(Buffer.from('\n\r\n\n' + send('x') + '\n'));
  assert.equal(frames.length, 1);
});

test('the heart-beat listener fires per LF as it arrives, even with no frame yet', () => {
  const { decoder, events } = recordingDecoder();
  decoder.push(Buffer.from('\r'));
  assert.deepEqual(events, [], 'a CR alone is not yet an EOL');
  decoder.push(Buffer.from('\n'));
  assert.deepEqual(events, ['heartbeat']);
  decoder.push(Buffer.from('\n\n'));
  assert.deepEqual(events, ['heartbeat', 'heartbeat', 'heartbeat']);
});

test('every frame gets its own headers array and body', () => {
  const { decoder, frames } = recordingDecoder();
  decoder.push(Buffer.from(send('one', 'x:1\n') + send('two', 'y:2\n')));
  assert.equal(frames.length, 2);
  assert.notEqual(frames[0]!.headers, frames[1]!.headers);
  assert.deepEqual(frames[0]!.headers, [
    ['destination', '/queue/a'],
    ['x', '1'],
  ]);
  assert.deepEqual(frames[1]!.headers, [
    ['destination', '/queue/a'],
    ['y', '2'],
  ]);
  assert.equal(frames[0]!.body.toString(), 'one');
});

test('a body that arrives in many chunks is delivered whole', () => {
  const body = Buffer.alloc(5000, 0x41);
  body[100] = 0;
  const bytes = Buffer.concat([Buffer.from(`SEND\ndestination:/q\ncontent-length:${body.length}\n\n`), body, Buffer.from([0])]);
  const { decoder, frames } = recordingDecoder();
  for (let i = 0; i < bytes.length; i += 333) decoder.push(bytes.subarray(i, i + 333));
  assert.equal(frames.length, 1);
  assert.ok(frames[0]!.body.equals(body));
});

test('bufferedBytes counts a pending body and drops to 0 once the frame is out', () => {
  const { decoder, frames } = recordingDecoder();
  decoder.push(Buffer.from('SEND\ndestination:/q\ncontent-length:10\n\n01234'));
  assert.equal(decoder.bufferedBytes, 5);
  decoder.push(Buffer.from('567'));
  assert.equal(decoder.bufferedBytes, 8);
  decoder.push(Buffer.from('89\0'));
  assert.equal(frames.length, 1);
  assert.equal(decoder.bufferedBytes, 0);
});

test('empty pushes change nothing', () => {
  const { decoder, events } = recordingDecoder();
  decoder.push(Buffer.alloc(0));
  decoder.push(Buffer.from('SEND\ndestination:/q\n'));
  decoder.push(Buffer.alloc(0));
  decoder.push(Buffer.from('\nz\0'));
  assert.deepEqual(events, ['SEND:z']);
});

test('server commands are refused by default and accepted with acceptServerCommands', () => {
  const message = Buffer.from('MESSAGE\ndestination:/q\nmessage-id:1\nsubscription:0\n\nm\0');
  assert.throws(
    () => new Decoder(() => {}).push(message),
    (err: unknown) => err instanceof FrameError && err.code === 'UNKNOWN_COMMAND',
  );
  const { decoder, events } = recordingDecoder({ acceptServerCommands: true });
  decoder.push(message);
  assert.deepEqual(events, ['MESSAGE:m']);
});

test('DEFAULT_LIMITS are frozen and partial overrides keep the other defaults', () => {
  assert.ok(Object.isFrozen(DEFAULT_LIMITS));
  assert.deepEqual({ ...DEFAULT_LIMITS }, { maxFrameBytes: 4 * 1024 * 1024, maxHeaders: 64, maxHeaderLineBytes: 8 * 1024 });
  // maxHeaders overridden; the default maxHeaderLineBytes (8192) still allows an 8000-byte line.
  const { decoder, events } = recordingDecoder({ limits: { maxHeaders: 2 } });
  decoder.push(Buffer.from(send('ok', `x:${'v'.repeat(8000)}\n`)));
  assert.deepEqual(events, ['SEND:ok']);
  assert.throws(
    () => decoder.push(Buffer.from(send('no', 'x:1\ny:2\n'))),
    (err: unknown) => err instanceof FrameError && err.code === 'TOO_MANY_HEADERS',
  );
});

// --- Memory held for a frame in progress (issue 13) ---

/** A frame of `bodyBytes` with a few headers, NUL-terminated or with content-length. */
function bigFrame(bodyBytes: number, withLength: boolean): { bytes: Buffer; body: Buffer } {
  const body = Buffer.alloc(bodyBytes);
  for (let i = 0; i < bodyBytes; i++) body[i] = 0x41 + (i % 26);
  const head = `SEND\ndestination:/queue/a\nx-long:${'h'.repeat(3000)}\n${withLength ? `content-length:${bodyBytes}\n` : ''}\n`;
  return { bytes: Buffer.concat([Buffer.from(head), body, Buffer.from([0])]), body };
}

for (const withLength of [true, false]) {
  test(`a frame pushed 1 byte at a time holds O(its bytes), all reserved from the budget (${withLength ? 'content-length' : 'NUL-terminated'})`, () => {
    const budget = new SharedByteBudget(Number.MAX_SAFE_INTEGER);
    const { bytes, body } = bigFrame(64 * 1024, withLength);
    const frames: Frame[] = [];
    const decoder = new Decoder((frame) => frames.push(frame), { budget });
    let maxRatio = 0;
    for (let i = 0; i < bytes.length - 1; i++) {
      decoder.push(bytes.subarray(i, i + 1));
      const buffered = decoder.bufferedBytes;
      // What the decoder holds is what it reserved, and at most twice what it buffers (+ 1 KiB).
      assert.equal(budget.usedBytes, decoder.heldBytes);
      assert.ok(decoder.heldBytes >= buffered, `${decoder.heldBytes} held for ${buffered} buffered bytes at ${i}`);
      // Buffers: at most twice what they buffer; parsed headers (counted once the decoder
      // stops mid-frame): their bytes plus 64 each. Together at most ~2x the frame so far.
      const heldForBuffers = decoder.heldBytes - decoder.heldHeaderBytes;
      assert.ok(heldForBuffers <= 2 * buffered + 1024, `${heldForBuffers} held for ${buffered} buffered bytes at ${i}`);
      if (i >= 3034) assert.ok(decoder.heldHeaderBytes >= 3000, `the 3000-byte header is counted at ${i}`);
      if (buffered > 4096) maxRatio = Math.max(maxRatio, decoder.heldBytes / (i + 1));
    }
    assert.ok(maxRatio <= 2, `held/buffered ratio ${maxRatio}`);
    decoder.push(bytes.subarray(bytes.length - 1));
    assert.equal(frames.length, 1);
    assert.ok(frames[0]!.body.equals(body));
    assert.equal(frames[0]!.headers[1]![1].length, 3000);
    assert.equal(decoder.heldBytes, 0, 'a frame out holds nothing more');
    assert.equal(budget.usedBytes, 0, 'and gives its reservation back');
  });
}

test('a header line pushed 1 byte at a time is held in one buffer of about its size', () => {
  const budget = new SharedByteBudget(Number.MAX_SAFE_INTEGER);
  const decoder = new Decoder(() => {}, { budget });
  const head = Buffer.from(`SEND\nx:${'v'.repeat(8000)}`);
  for (let i = 0; i < head.length; i++) decoder.push(head.subarray(i, i + 1));
  assert.ok(decoder.heldBytes <= 8192 + 2, `${decoder.heldBytes} bytes held for an 8 KB line`);
  assert.ok(decoder.heldBytes >= 8000);
  decoder.push(Buffer.from('\n'));
  // The line buffer is freed; the parsed header is held (and counted) until the frame is out.
  assert.equal(decoder.heldBytes, decoder.heldHeaderBytes);
  assert.ok(decoder.heldHeaderBytes >= 8002 && decoder.heldHeaderBytes <= 8002 + 128, `${decoder.heldHeaderBytes} for an 8 KB header`);
  assert.equal(budget.usedBytes, decoder.heldBytes);
  decoder.push(Buffer.from('\n\0'));
  assert.equal(decoder.heldBytes, 0, 'the frame is out: nothing held');
  assert.equal(budget.usedBytes, 0);
});

test('parsed headers of a frame spanning pushes are reserved: SERVER_BUSY past the budget, given back by emit, failure and dispose()', () => {
  const line = (i: number): string => `h${i}:${'v'.repeat(4000)}\n`;
  // 20 headers of 4 KB, each in its own push: the line buffer alone never holds more than one.
  const budget = new SharedByteBudget(64 * 1024);
  const hog = new Decoder(() => {}, { budget });
  hog.push(Buffer.from('SEND\ndestination:/q\n'));
  assert.throws(
    () => {
      for (let i = 0; i < 20; i++) hog.push(Buffer.from(line(i)));
    },
    (err: unknown) => err instanceof FrameError && err.code === 'SERVER_BUSY',
  );
  assert.equal(budget.usedBytes, 0, 'the failed decoder gave its headers back');

  const { decoder, frames } = recordingDecoder({ budget });
  decoder.push(Buffer.from('SEND\ndestination:/q\n'));
  for (let i = 0; i < 10; i++) decoder.push(Buffer.from(line(i)));
  assert.ok(budget.usedBytes >= 10 * 4000, `${budget.usedBytes} reserved for 10 parsed 4 KB headers`);
  assert.equal(budget.usedBytes, decoder.heldBytes);
  decoder.push(Buffer.from('\nbody'));
  assert.ok(decoder.heldHeaderBytes >= 10 * 4000, 'still held while the body comes');
  decoder.push(Buffer.from('\0'));
  assert.equal(frames.length, 1);
  assert.equal(frames[0]!.headers.length, 11);
  assert.equal(budget.usedBytes, 0, "emitted: the headers are the frame's");

  decoder.push(Buffer.from(`SEND\n${line(1)}`));
  assert.ok(budget.usedBytes > 4000);
  decoder.dispose();
  assert.equal(budget.usedBytes, 0, 'dispose() gives them back');
});

test('a frame within one push reserves nothing for its headers', () => {
  const budget = new SharedByteBudget(1024); // less than its headers
  const { decoder, frames } = recordingDecoder({ budget });
  decoder.push(Buffer.from(`SEND\ndestination:/q\nbig:${'v'.repeat(4000)}\n\nbody\0`));
  assert.equal(frames.length, 1);
  assert.equal(budget.refusedCount, 0);
});

test('chunks pushed while paused are copied and accounted, and given back by dispose()', () => {
  const budget = new SharedByteBudget(Number.MAX_SAFE_INTEGER);
  const { decoder, events } = recordingDecoder({ budget });
  decoder.pause();
  const bytes = Buffer.from(send('one') + send('two'));
  for (let i = 0; i < bytes.length; i++) decoder.push(bytes.subarray(i, i + 1));
  assert.equal(decoder.bufferedBytes, bytes.length);
  assert.equal(budget.usedBytes, decoder.heldBytes);
  assert.ok(decoder.heldBytes <= 2 * bytes.length + 256);
  decoder.resume();
  assert.deepEqual(events, ['SEND:one', 'SEND:two']);
  assert.equal(budget.usedBytes, 0);

  decoder.pause();
  decoder.push(Buffer.from('SEND\ndestination:/q\n\npartial'));
  assert.ok(budget.usedBytes > 0);
  decoder.dispose();
  assert.equal(budget.usedBytes, 0, 'dispose() releases everything');
  assert.equal(decoder.isFailed, true);
});

test('a spent budget fails the decoder with SERVER_BUSY, releases what it held, and others go on', () => {
  const budget = new SharedByteBudget(32 * 1024);
  const hog = new Decoder(() => {}, { budget });
  const { bytes } = bigFrame(64 * 1024, true);
  assert.throws(
    () => {
      for (let i = 0; i < bytes.length; i += 1000) hog.push(bytes.subarray(i, i + 1000));
    },
    (err: unknown) => err instanceof FrameError && err.code === 'SERVER_BUSY',
  );
  assert.equal(hog.isFailed, true);
  assert.equal(budget.usedBytes, 0, 'the refused decoder gave its bytes back');
  assert.equal(budget.refusedCount, 1);

  // A frame within the budget, split, goes through; one in a single chunk needs no budget at all.
  const { decoder, frames } = recordingDecoder({ budget });
  const small = bigFrame(8 * 1024, false).bytes;
  for (let i = 0; i < small.length; i += 100) decoder.push(small.subarray(i, i + 100));
  decoder.push(bytes);
  assert.equal(frames.length, 2);
  assert.equal(budget.usedBytes, 0);
});

test('a body that arrives within one chunk is a view of it (no copy)', () => {
  const { decoder, frames } = recordingDecoder();
  const chunk = Buffer.from(send('zero-copy'));
  decoder.push(chunk);
  assert.equal(frames[0]!.body.buffer, chunk.buffer);
});
