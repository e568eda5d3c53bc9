// Frame encoding. Header names and values are escaped by the negotiated version (none on
// CONNECT/CONNECTED), and every frame with a body carries content-length, written by us
// (a caller's own content-length header is ignored) so that binary bodies survive.
//
// MESSAGE fan-out uses the split form: encodeFrameTail() once per destination and version,
// then a short per-subscriber head (command + subscription/ack headers) in front of it.

import { escapeHeader, unescapableName } from './escape';
import { isUnescapedCommand } from './frame';
import type { Frame, Header, StompVersion } from './frame';

/** "name:value\n" lines, escaped for `version` unless `isRaw`. content-length is skipped. */
export function encodeHeaderLines(headers: readonly Header[], version: StompVersion, isRaw = false): string {
  let out = '';
  for (let i = 0; i < headers.length; i++) {
    const [name, value] = headers[i]!;
    if (name === 'content-length') continue;
    // Unescaped frames (CONNECT/CONNECTED) cannot carry a line break: fold it rather than
    // let a value (a login, a token's subject) inject a header.
    if (isRaw) out += `${unescapableName(name)}:${foldLineBreaks(value)}\n`;
    else if (version === '1.0') out += `${unescapableName(name)}:${escapeHeader(value, version)}\n`;
    else out += `${escapeHeader(name, version)}:${escapeHeader(value, version)}\n`;
  }
  return out;
}

function foldLineBreaks(text: string): string {
  return text.includes('\n') || text.includes('\r') ? text.replace(/[\r\n]/g, ' ') : text;
}

/** Everything after the per-subscriber head: headers, content-length, blank line, body, NUL. */
export function encodeFrameTail(headers: readonly Header[], body: Buffer, version: StompVersion, isRaw = false): Buffer {
  let head = encodeHeaderLines(headers, version, isRaw);
  if (body.length > 0) head += `content-length:${body.length}\n`;
  head += '\n';
  const headLength = Buffer.byteLength(head);
  const out = Buffer.allocUnsafe(headLength + body.length + 1);
  out.write(head, 0, 'utf8');
  body.copy(out, headLength);
  out[headLength + body.length] = 0;
  return out;
}

export function encodeFrame(frame: Frame, version: StompVersion): Buffer {
  const isRaw = isUnescapedCommand(frame.command);
  const tail = encodeFrameTail(frame.headers, frame.body, version, isRaw);
  const command = Buffer.from(`${frame.command}\n`, 'latin1');
  return Buffer.concat([command, tail], command.length + tail.length);
}
