// The envelope between instances: random envelopes (binary bodies, odd header names and
// values, empty fields) survive encode → decode unchanged; random byte mutations of a valid
// one either decode to a well-formed envelope or throw an EnvelopeError, never anything else;
// and malformed input is refused with an error naming what is wrong, in time linear in it.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { EnvelopeError, decodeEnvelope, encodeEnvelope } from '../../src/cluster/envelope';
import type { Envelope } from '../../src/cluster/envelope';
import type { Header } from '../../src/codec';

const NUM_RUNS = 500;

/** Characters that would break a text format (separators, NUL, escapes), mixed with any code point. */
const oddChar = fc.oneof(fc.constantFrom('\0', '\n', '\r', ':', '\\', '{', '}', '|', 'é', '€', '😀', '\u0085', '\u2028'), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }));
const text = fc.string({ unit: oddChar, maxLength: 40 });
const body = fc.oneof(
  fc.constant(Buffer.alloc(0)),
  fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
);
const headers = fc.array(fc.tuple(text, text), { maxLength: 12 }).map((list) => list.map(([name, value]): Header => [name, value]));
const envelope: fc.Arbitrary<Envelope> = fc.record({ origin: text, messageId: text, destination: text, routeKey: text, headers, body });

function comparable(e: Envelope): unknown {
  return { ...e, headers: e.headers.map(([n, v]) => [n, v]), body: [...e.body] };
}

function isWellFormed(e: Envelope): boolean {
  const isText = (v: unknown): boolean => typeof v === 'string';
  return (
    isText(e.origin) &&
    isText(e.messageId) &&
    isText(e.destination) &&
    isText(e.routeKey) &&
    Array.isArray(e.headers) &&
    e.headers.every((h: Header) => h.length === 2 && isText(h[0]) && isText(h[1])) &&
    Buffer.isBuffer(e.body)
  );
}

describe('envelope', () => {
  it('round-trips any envelope: binary bodies, odd header names and values, empty fields', () => {
    fc.assert(
      fc.property(envelope, (e) => {
        assert.deepEqual(comparable(decodeEnvelope(encodeEnvelope(e))), comparable(e));
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('a mutated envelope decodes to a well-formed one or throws EnvelopeError, nothing else', () => {
    const mutation = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')), { minLength: 1, maxLength: 6 });
    fc.assert(
      fc.property(envelope, mutation, fc.nat(), (e, changes, cut) => {
        const bytes = [...encodeEnvelope(e)];
        for (const [at, value, kind] of changes) {
          const index = at % (bytes.length + 1);
          if (kind === 'set' && index < bytes.length) bytes[index] = value;
          else if (kind === 'insert') bytes.splice(index, 0, value);
          else if (kind === 'delete' && index < bytes.length) bytes.splice(index, 1);
        }
        const mutated = Buffer.from(bytes.slice(0, bytes.length - (cut % 3 === 0 ? cut % (bytes.length + 1) : 0)));
        try {
          assert.ok(isWellFormed(decodeEnvelope(mutated)));
        } catch (error) {
          assert.ok(error instanceof EnvelopeError, `not an EnvelopeError: ${String(error)}`);
        }
      }),
      { numRuns: NUM_RUNS * 4 },
    );
  });

  it('refuses malformed input with an error that says what is wrong', () => {
    const valid = encodeEnvelope({ origin: 'a', messageId: 'm', destination: '/topic/x', routeKey: '/topic/x', headers: [['k', 'v']], body: Buffer.from('hi') });
    const refusals: [Buffer, RegExp][] = [
      [Buffer.alloc(0), /empty envelope/],
      [Buffer.from([2, 0, 0, 0, 0, 0]), /unknown envelope format 2/],
      [valid.subarray(0, 4), /truncated envelope: the message id \(1 bytes\) runs past the end/],
      [valid.subarray(0, 3), /truncated envelope: the length of the message id/],
      [Buffer.from([1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), /the length of the origin takes more than 5 bytes/],
      [Buffer.from([1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]), /headers cannot fit in the 0 bytes left/],
      [Buffer.from([1, 2, 0xc3, 0x28, 0, 0, 0, 0]), /the origin is not UTF-8/],
      [Buffer.from([1, 0, 0, 0, 0, 1, 1, 0x61]), /truncated envelope: the length of the value of header 0/],
    ];
    for (const [bytes, message] of refusals) {
      assert.throws(
        () => decodeEnvelope(bytes),
        (error: unknown) => error instanceof EnvelopeError && message.test(error.message),
        message.source,
      );
    }
  });

  it('a count of a million headers in a short input is refused at once, not looped over', () => {
    const bytes = Buffer.from([1, 0, 0, 0, 0, 0xc0, 0x84, 0x3d, ...Buffer.alloc(100)]); // 1,000,000 headers, 100 bytes
    assert.throws(() => decodeEnvelope(bytes), /1000000 headers cannot fit in the 100 bytes left/);
  });
});
