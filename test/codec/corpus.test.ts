// The frames/ corpus as one table test: every fixture is decoded in one push, byte by byte
// and at seeded pseudo-random split points, and each way must give the expected frames and
// heart-beats, or the expected FrameError after the expected number of frames.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { FrameError } from '../../src/codec';
import type { DecoderLimits, FrameErrorCode, StompVersion } from '../../src/codec';
import { decodeChunks } from '../helpers/decode';
import type { ComparableFrame, Outcome } from '../helpers/decode';

const FRAMES_DIR = path.join(path.resolve(__dirname, '../../..'), 'frames');

const ERROR_CODES: readonly FrameErrorCode[] = ['FRAME_TOO_LARGE', 'TOO_MANY_HEADERS', 'HEADER_LINE_TOO_LONG', 'BAD_ESCAPE', 'MALFORMED_HEADER', 'UNKNOWN_COMMAND', 'BAD_CONTENT_LENGTH', 'MISSING_NUL'];
const EXPECTATION_KEYS = new Set(['description', 'version', 'limits', 'acceptServerCommands', 'frames', 'heartbeats', 'error', 'framesBeforeError']);
const LIMIT_KEYS = new Set(['maxFrameBytes', 'maxHeaders', 'maxHeaderLineBytes']);

interface ExpectedFrame {
  command: string;
  headers: [string, string][];
  body?: string;
  bodyBase64?: string;
}

interface Expectation {
  description: string;
  version?: StompVersion;
  limits?: Partial<DecoderLimits>;
  acceptServerCommands?: boolean;
  frames?: ExpectedFrame[];
  heartbeats?: number;
  error?: FrameErrorCode;
  framesBeforeError?: number;
}

function expectedComparable(frame: ExpectedFrame): ComparableFrame {
  const body = frame.bodyBase64 !== undefined ? Buffer.from(frame.bodyBase64, 'base64') : Buffer.from(frame.body ?? '', 'utf8');
  return { command: frame.command, headers: frame.headers, bodyHex: body.toString('hex') };
}

function decode(chunks: Buffer[], expectation: Expectation): Outcome {
  return decodeChunks(chunks, {
    version: expectation.version ?? '1.2',
    limits: expectation.limits ?? {},
    acceptServerCommands: expectation.acceptServerCommands ?? false,
  });
}

/** mulberry32: a tiny seeded PRNG, so the split points are the same on every run. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function seedOf(text: string): number {
  let hash = 2166136261;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 16777619);
  return hash >>> 0;
}

function splitAt(bytes: Buffer, cuts: number[]): Buffer[] {
  const chunks: Buffer[] = [];
  let start = 0;
  for (const cut of [...new Set(cuts)].sort((a, b) => a - b)) {
    if (cut <= start || cut >= bytes.length) continue;
    chunks.push(bytes.subarray(start, cut));
    start = cut;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

/** The three ways of feeding a fixture: whole, byte by byte, and several seeded random splits. */
function chunkings(name: string, bytes: Buffer): [string, Buffer[]][] {
  const ways: [string, Buffer[]][] = [['one push', [bytes]]];
  const bytewise: Buffer[] = [];
  for (let i = 0; i < bytes.length; i++) bytewise.push(bytes.subarray(i, i + 1));
  ways.push(['byte by byte', bytewise]);
  const random = seededRandom(seedOf(name));
  for (let round = 0; round < 6; round++) {
    const cutCount = 1 + Math.floor(random() * 8);
    const cuts = Array.from({ length: cutCount }, () => 1 + Math.floor(random() * Math.max(1, bytes.length - 1)));
    ways.push([`split at ${[...new Set(cuts)].sort((a, b) => a - b).join(',')}`, splitAt(bytes, cuts)]);
  }
  return ways;
}

function checkExpectationShape(name: string, expectation: Expectation): void {
  for (const key of Object.keys(expectation)) assert.ok(EXPECTATION_KEYS.has(key), `${name}: unknown key ${key}`);
  for (const key of Object.keys(expectation.limits ?? {})) assert.ok(LIMIT_KEYS.has(key), `${name}: unknown limit ${key}`);
  assert.equal(typeof expectation.description, 'string', `${name}: description`);
  assert.ok((expectation.frames === undefined) !== (expectation.error === undefined), `${name}: exactly one of frames and error`);
  if (expectation.error !== undefined) {
    assert.ok(ERROR_CODES.includes(expectation.error), `${name}: unknown error code ${expectation.error}`);
    assert.ok(name.startsWith('invalid-'), `${name}: an error fixture is named invalid-*`);
    assert.equal(expectation.heartbeats, undefined, `${name}: heartbeats only on valid fixtures`);
  } else {
    assert.ok(name.startsWith('valid-'), `${name}: a frames fixture is named valid-*`);
    assert.equal(expectation.framesBeforeError, undefined, `${name}: framesBeforeError only on invalid fixtures`);
  }
}

function loadCorpus(): { name: string; bytes: Buffer; expectation: Expectation }[] {
  const files = fs.readdirSync(FRAMES_DIR);
  const stompNames = files
    .filter((f) => f.endsWith('.stomp'))
    .map((f) => f.slice(0, -'.stomp'.length))
    .sort();
  const jsonNames = files
    .filter((f) => f.endsWith('.json'))
    .map((f) => f.slice(0, -'.json'.length))
    .sort();
  assert.deepEqual(jsonNames, stompNames, 'every .stomp has a .json and every .json a .stomp');
  return stompNames.map((name) => ({
    name,
    bytes: fs.readFileSync(path.join(FRAMES_DIR, `${name}.stomp`)),
    expectation: JSON.parse(fs.readFileSync(path.join(FRAMES_DIR, `${name}.json`), 'utf8')) as Expectation,
  }));
}

test('codec corpus (frames/)', async (t) => {
  const corpus = loadCorpus();
  assert.ok(corpus.length >= 60, `the corpus has ${corpus.length} fixtures, expected at least 60`);
  const codesSeen = new Set(corpus.map((f) => f.expectation.error).filter((code) => code !== undefined));
  assert.deepEqual([...codesSeen].sort(), [...ERROR_CODES].sort(), 'every FrameErrorCode has a fixture');

  for (const { name, bytes, expectation } of corpus) {
    await t.test(name, () => {
      checkExpectationShape(name, expectation);
      assert.ok(bytes.length > 0 && bytes.length <= 64 * 1024, `${name}: size ${bytes.length}`);
      for (const [way, chunks] of chunkings(name, bytes)) {
        const outcome = decode(chunks, expectation);
        const context = `${name} (${way})`;
        if (expectation.error !== undefined) {
          assert.ok(outcome.error instanceof FrameError, `${context}: expected FrameError ${expectation.error}, got ${String(outcome.error)}`);
          assert.equal(outcome.error.code, expectation.error, `${context}: error code (${outcome.error.message})`);
          assert.equal(outcome.frames.length, expectation.framesBeforeError ?? 0, `${context}: frames before the error`);
        } else {
          assert.equal(outcome.error, undefined, `${context}: unexpected ${String(outcome.error)}`);
          assert.deepEqual(outcome.frames, expectation.frames!.map(expectedComparable), `${context}: frames`);
          if (expectation.heartbeats !== undefined) assert.equal(outcome.heartbeats, expectation.heartbeats, `${context}: heart-beats`);
        }
      }
    });
  }
});
