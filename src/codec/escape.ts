// Header value escaping by protocol version (STOMP 1.2 "Value Encoding"; 1.1 has no \r;
// 1.0 has none at all). An undefined escape sequence is a fatal error.

import { FrameError } from './errors';
import type { StompVersion } from './frame';

const NEEDS_ESCAPE_12 = /[\\\r\n:]/;
const NEEDS_ESCAPE_11 = /[\\\n:]/;

export function escapeHeader(value: string, version: StompVersion): string {
  if (version === '1.2') {
    if (!NEEDS_ESCAPE_12.test(value)) return value;
    let out = '';
    for (let i = 0; i < value.length; i++) {
      const ch = value[i]!;
      if (ch === '\\') out += '\\\\';
      else if (ch === '\r') out += '\\r';
      else if (ch === '\n') out += '\\n';
      else if (ch === ':') out += '\\c';
      else out += ch;
    }
    return out;
  }
  if (version === '1.1') {
    if (!NEEDS_ESCAPE_11.test(value)) return value;
    let out = '';
    for (let i = 0; i < value.length; i++) {
      const ch = value[i]!;
      if (ch === '\\') out += '\\\\';
      else if (ch === '\n') out += '\\n';
      else if (ch === ':') out += '\\c';
      else out += ch;
    }
    return out;
  }
  // 1.0 cannot carry a line break inside a header: fold it into a space rather than break framing.
  return value.includes('\n') || value.includes('\r') ? value.replace(/[\r\n]/g, ' ') : value;
}

/**
 * A header name for a frame that cannot escape (1.0, CONNECT/CONNECTED): a colon would move
 * the name/value split and a line break would start a new header, so both become "_".
 */
export function unescapableName(name: string): string {
  return /[:\r\n]/.test(name) ? name.replace(/[:\r\n]/g, '_') : name;
}

export function unescapeHeader(raw: string, version: StompVersion): string {
  if (version === '1.0' || !raw.includes('\\')) return raw;
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i]!;
    if (ch !== '\\') {
      out += ch;
      continue;
    }
    const next = raw[++i];
    if (next === '\\') out += '\\';
    else if (next === 'n') out += '\n';
    else if (next === 'c') out += ':';
    else if (next === 'r' && version === '1.2') out += '\r';
    else {
      const seq = next === undefined ? '\\ at end of value' : `\\${next}`;
      throw new FrameError('BAD_ESCAPE', `undefined escape sequence ${JSON.stringify(seq)} in a STOMP ${version} header`);
    }
  }
  return out;
}
