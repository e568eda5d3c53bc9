// Encoder output, byte for byte: content-length policy, escaping by version, the raw
// CONNECT/STOMP/CONNECTED exception and the split head/tail form used for MESSAGE fan-out.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Decoder, EMPTY_BODY, encodeFrame, encodeFrameTail, encodeHeaderLines, escapeHeader } from '../../src/codec';
import type { Frame, Header } from '../../src/codec';

function frame(command: string, headers: Header[], body: Buffer | string = EMPTY_BODY): Frame {
  return { command, headers, body: typeof body === 'string' ? Buffer.from(body) : body };
}

function text(bytes: Buffer): string {
  return bytes.toString('utf8');
}

test('a non-empty body gets content-length, written after the caller headers', () => {
  const bytes = encodeFrame(
    frame(
      'SEND',
      [
        ['destination', '/q'],
        ['x', '1'],
      ],
      'hello',
    ),
    '1.2',
  );
  assert.equal(text(bytes), 'SEND\ndestination:/q\nx:1\ncontent-length:5\n\nhello\0');
});

test('content-length counts bytes, not characters', () => {
  const bytes = encodeFrame(frame('SEND', [], 'é😀'), '1.2');
  assert.equal(text(bytes), 'SEND\ncontent-length:6\n\né😀\0');
});

test("a caller's content-length is replaced by the real one, never duplicated", () => {
  const bytes = encodeFrame(
    frame(
      'SEND',
      [
        ['content-length', '999'],
        ['destination', '/q'],
        ['content-length', '1'],
      ],
      'abc',
    ),
    '1.2',
  );
  assert.equal(text(bytes), 'SEND\ndestination:/q\ncontent-length:3\n\nabc\0');
});

test('an empty body has no content-length, even when the caller gave one', () => {
  assert.equal(text(encodeFrame(frame('SEND', [['destination', '/q']]), '1.2')), 'SEND\ndestination:/q\n\n\0');
  assert.equal(
    text(
      encodeFrame(
        frame('SEND', [
          ['destination', '/q'],
          ['content-length', '12'],
        ]),
        '1.2',
      ),
    ),
    'SEND\ndestination:/q\n\n\0',
  );
  assert.equal(text(encodeFrame(frame('DISCONNECT', []), '1.2')), 'DISCONNECT\n\n\0');
});

test('binary bodies with NULs are copied exactly and followed by one NUL', () => {
  const body = Buffer.from([0, 0xff, 0, 0x80, 0x0a, 0]);
  const bytes = encodeFrame(frame('MESSAGE', [['destination', '/q']], body), '1.2');
  const head = Buffer.from('MESSAGE\ndestination:/q\ncontent-length:6\n\n');
  assert.deepEqual(bytes, Buffer.concat([head, body, Buffer.from([0])]));
});

test('1.2 escapes CR, LF, colon and backslash in names and values', () => {
  const bytes = encodeFrame(frame('MESSAGE', [['a:b\\c', 'x\ry\nz:w\\v']]), '1.2');
  assert.equal(text(bytes), 'MESSAGE\na\\cb\\\\c:x\\ry\\nz\\cw\\\\v\n\n\0');
});

test('1.1 escapes LF, colon and backslash but has no escape for CR', () => {
  const bytes = encodeFrame(frame('MESSAGE', [['k', 'x\ry\nz:w\\v']]), '1.1');
  assert.equal(text(bytes), 'MESSAGE\nk:x\ry\\nz\\cw\\\\v\n\n\0');
});

test('1.0 escapes nothing and folds CR and LF into spaces so framing survives', () => {
  const bytes = encodeFrame(
    frame('MESSAGE', [
      ['k', 'a\r\nb\nc:d\\e'],
      ['line\nname', 'v'],
    ]),
    '1.0',
  );
  assert.equal(text(bytes), 'MESSAGE\nk:a  b c:d\\e\nline_name:v\n\n\0');
  assert.equal(escapeHeader('no breaks: \\ here', '1.0'), 'no breaks: \\ here');
});

test('CONNECTED is not escaped, whatever the version', () => {
  for (const version of ['1.2', '1.1', '1.0'] as const) {
    const bytes = encodeFrame(
      frame('CONNECTED', [
        ['version', '1.2'],
        ['session', 'a:b\\c'],
        ['server', 'stompd/0.1'],
      ]),
      version,
    );
    assert.equal(text(bytes), 'CONNECTED\nversion:1.2\nsession:a:b\\c\nserver:stompd/0.1\n\n\0', version);
  }
});

test('CONNECT and STOMP are not escaped either', () => {
  for (const command of ['CONNECT', 'STOMP']) {
    const bytes = encodeFrame(
      frame(command, [
        ['login', 'DOMAIN\\user'],
        ['passcode', 'p:w'],
      ]),
      '1.2',
    );
    assert.equal(text(bytes), `${command}\nlogin:DOMAIN\\user\npasscode:p:w\n\n\0`);
  }
});

test('ERROR and RECEIPT are escaped like any other frame', () => {
  assert.equal(text(encodeFrame(frame('RECEIPT', [['receipt-id', 'r:1']]), '1.2')), 'RECEIPT\nreceipt-id:r\\c1\n\n\0');
  assert.equal(text(encodeFrame(frame('ERROR', [['message', 'BAD_ESCAPE: line\nbreak']], 'details'), '1.2')), 'ERROR\nmessage:BAD_ESCAPE\\c line\\nbreak\ncontent-length:7\n\ndetails\0');
});

test('repeated headers are all written; the reader keeps the first', () => {
  const bytes = encodeFrame(
    frame('SEND', [
      ['x', '1'],
      ['x', '2'],
    ]),
    '1.2',
  );
  assert.equal(text(bytes), 'SEND\nx:1\nx:2\n\n\0');
});

test('encodeHeaderLines skips content-length and honours isRaw', () => {
  const headers: Header[] = [
    ['a', 'b:c'],
    ['content-length', '4'],
    ['d', 'e\nf'],
  ];
  assert.equal(encodeHeaderLines(headers, '1.2'), 'a:b\\cc\nd:e\\nf\n');
  assert.equal(encodeHeaderLines(headers, '1.2', true), 'a:b:c\nd:e f\n', 'raw (CONNECT/CONNECTED) values fold line breaks instead of injecting a header');
  assert.equal(encodeHeaderLines([], '1.2'), '');
});

test('a per-subscriber head in front of encodeFrameTail gives the same frame as encodeFrame', () => {
  const headers: Header[] = [
    ['destination', '/topic/t'],
    ['message-id', 'm:1'],
    ['content-type', 'text/plain'],
  ];
  const body = Buffer.from('payload');
  const tail = encodeFrameTail(headers, body, '1.2');
  for (const subscription of ['0', 'sub:1']) {
    const head = Buffer.from(`MESSAGE\nsubscription:${escapeHeader(subscription, '1.2')}\n`);
    const whole = encodeFrame(frame('MESSAGE', [['subscription', subscription], ...headers], body), '1.2');
    assert.deepEqual(Buffer.concat([head, tail]), whole);

    const decoded: Frame[] = [];
    new Decoder((f) => decoded.push(f), { acceptServerCommands: true }).push(Buffer.concat([head, tail]));
    assert.equal(decoded.length, 1);
    assert.deepEqual(decoded[0]!.headers, [['subscription', subscription], ...headers, ['content-length', '7']]);
    assert.equal(decoded[0]!.body.toString(), 'payload');
  }
});

test('encodeFrameTail of an empty body ends in the blank line and the NUL', () => {
  assert.equal(text(encodeFrameTail([['a', '1']], EMPTY_BODY, '1.2')), 'a:1\n\n\0');
  assert.equal(text(encodeFrameTail([], EMPTY_BODY, '1.2')), '\n\0');
});
