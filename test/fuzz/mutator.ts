// Mutated STOMP frames for the fuzz run: the frames/ corpus (valid and invalid fixtures) cut,
// flipped, spliced, padded and repeated, from a seeded PRNG so that a run replays. Mutations
// aim at what a hand-written decoder gets wrong: lengths, escapes, line ends, NULs, limits.

import fs from 'node:fs';
import path from 'node:path';
import type { Random } from '../helpers/seeded-random';

const CORPUS_DIR = path.resolve(__dirname, '../../../frames');

/** Every `.stomp` fixture of the corpus that does not open with a CONNECT (sent after ours). */
export function loadCorpus(): Buffer[] {
  return fs
    .readdirSync(CORPUS_DIR)
    .filter((name) => name.endsWith('.stomp'))
    .sort()
    .map((name) => fs.readFileSync(path.join(CORPUS_DIR, name)))
    .filter((bytes) => bytes.length > 0);
}

const TOKENS = [
  '\n',
  '\r\n',
  '\0',
  ':',
  '\\',
  '\\n',
  '\\c',
  '\\r',
  '\\\\',
  '\\t',
  'content-length:',
  'content-length:0\n',
  'content-length:4294967296\n',
  'content-length:-1\n',
  'receipt:r\n',
  'destination:/queue/fz\n',
  'destination:/topic/fz\n',
  'id:0\n',
  'ack:client\n',
  'transaction:tx\n',
  'SEND\n',
  'SUBSCRIBE\n',
  'ACK\n',
  'NACK\n',
  'BEGIN\n',
  'COMMIT\n',
  'ABORT\n',
  'UNSUBSCRIBE\n',
  'DISCONNECT\n',
  'CONNECT\n',
  '\xff\xfe',
  '\u00e9',
  'x-presence:join\n',
  'heart-beat:1,1\n',
].map((t) => Buffer.from(t, 'latin1'));

const INTERESTING_BYTES = [0x00, 0x0a, 0x0d, 0x3a, 0x5c, 0xff, 0x20, 0x7f, 0x80];

function mutateOnce(bytes: Buffer, corpus: readonly Buffer[], random: Random): Buffer {
  const at = (): number => random.int(bytes.length + 1);
  switch (random.int(10)) {
    case 0: {
      const out = Buffer.from(bytes);
      for (let i = random.int(4) + 1; i > 0 && out.length > 0; i--) out[random.int(out.length)]! ^= 1 << random.int(8);
      return out;
    }
    case 1: {
      const out = Buffer.from(bytes);
      if (out.length > 0) out[random.int(out.length)] = random.pick(INTERESTING_BYTES);
      return out;
    }
    case 2: {
      const i = at();
      return Buffer.concat([bytes.subarray(0, i), random.pick(TOKENS), bytes.subarray(i)]);
    }
    case 3: {
      const i = at();
      const j = Math.min(bytes.length, i + random.int(32) + 1);
      return Buffer.concat([bytes.subarray(0, i), bytes.subarray(j)]);
    }
    case 4:
      return bytes.subarray(0, at());
    case 5: {
      const i = at();
      const j = Math.min(bytes.length, i + random.int(64) + 1);
      const piece = bytes.subarray(i, j);
      return Buffer.concat([bytes.subarray(0, j), ...Array.from({ length: random.int(8) + 1 }, () => piece), bytes.subarray(j)]);
    }
    case 6: {
      const other = random.pick(corpus);
      return Buffer.concat([bytes.subarray(0, at()), other.subarray(random.int(other.length + 1))]);
    }
    case 7: {
      // A header line many times over: the header-count and line limits.
      const line = Buffer.from(`x-h${random.int(10)}:${'v'.repeat(random.int(64))}\n`, 'latin1');
      const newline = bytes.indexOf(0x0a);
      const i = newline < 0 ? bytes.length : newline + 1;
      return Buffer.concat([bytes.subarray(0, i), ...Array.from({ length: random.int(200) + 1 }, () => line), bytes.subarray(i)]);
    }
    case 8: {
      const i = at();
      return Buffer.concat([bytes.subarray(0, i), Buffer.alloc(random.int(20_000) + 1, random.pick([0x41, 0x3a, 0x5c, 0x0a])), bytes.subarray(i)]);
    }
    default: {
      const out = Buffer.allocUnsafe(random.int(64) + 1);
      for (let i = 0; i < out.length; i++) out[i] = random.int(256);
      return Buffer.concat([bytes.subarray(0, at()), out]);
    }
  }
}

/** One mutated frame: a corpus entry with one to three mutations. */
export function mutatedFrame(corpus: readonly Buffer[], random: Random): Buffer {
  let bytes = random.pick(corpus);
  for (let n = random.int(3) + 1; n > 0; n--) bytes = mutateOnce(bytes, corpus, random);
  return bytes;
}

/** `bytes` cut at random points: how it reaches the socket. */
export function chunked(bytes: Buffer, random: Random): Buffer[] {
  const pieces: Buffer[] = [];
  let offset = 0;
  while (offset < bytes.length) {
    const size = random.chance(0.5) ? bytes.length - offset : random.int(Math.max(1, bytes.length - offset)) + 1;
    pieces.push(bytes.subarray(offset, offset + size));
    offset += size;
  }
  return pieces;
}
