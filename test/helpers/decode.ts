// Decoding a byte stream chunk by chunk into plain, comparable data: shared by the corpus
// table test and the property tests.

import { Decoder } from '../../src/codec';
import type { DecoderOptions, Frame, Header } from '../../src/codec';

/** A frame as plain data, body in hex so that a mismatch shows readable bytes. */
export interface ComparableFrame {
  command: string;
  headers: Header[];
  bodyHex: string;
}

export interface Outcome {
  frames: ComparableFrame[];
  heartbeats: number;
  /** What push() threw, if anything; decoding stops there. */
  error: unknown;
}

export function comparable(frame: Frame): ComparableFrame {
  return { command: frame.command, headers: frame.headers.map(([n, v]): Header => [n, v]), bodyHex: frame.body.toString('hex') };
}

export function decodeChunks(chunks: readonly Buffer[], options: DecoderOptions): Outcome {
  const outcome: Outcome = { frames: [], heartbeats: 0, error: undefined };
  const decoder = new Decoder((frame) => outcome.frames.push(comparable(frame)), options);
  decoder.setHeartbeatListener(() => outcome.heartbeats++);
  for (const chunk of chunks) {
    try {
      decoder.push(chunk);
    } catch (err) {
      outcome.error = err;
      break;
    }
  }
  return outcome;
}
