// The load generator's sockets, kept cheap so that a run measures the server rather than
// its clients: at a million deliveries a second, what a client spends per read matters.
//
// - TCP: every connection reads into one shared buffer (net's `onread`), so a read allocates
//   nothing; the bytes are handed on synchronously and must be copied by whoever keeps them.
// - WebSocket: a minimal RFC 6455 client over such a socket: the upgrade request, the
//   server's frames parsed in place (their payloads handed on as views of the read buffer,
//   fragments and all: the consumers here read a byte stream, not messages), our frames
//   masked as the RFC requires. Pings are answered; no extensions.
//
// Both hand the consumer `(bytes, start, end)`: the bytes of interest are bytes[start, end).

import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import net from 'node:net';

/** Bytes in: valid only during the call (a view of the shared read buffer). */
export type BytesListener = (bytes: Buffer, start: number, end: number) => void;

export interface WireSocket {
  send(bytes: Buffer): void;
  /** Bytes written but not yet handed to the kernel. */
  bufferedBytes(): number;
  destroy(): void;
}

export interface WireEvents {
  onBytes: BytesListener;
  /** Once, when the connection ends for any reason but our destroy(). */
  onLost: (reason: string) => void;
}

/** One read's worth for every socket in the process; reads are handled one at a time. */
const SHARED_READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

function connectTcp(host: string, port: number, localAddress: string | undefined, onRead: (nread: number, buffer: Buffer) => void): net.Socket {
  const socket = net.connect({
    host,
    port,
    ...(localAddress !== undefined ? { localAddress } : {}),
    onread: {
      buffer: SHARED_READ_BUFFER,
      callback: (nread: number, buffer: Uint8Array) => {
        onRead(nread, buffer as Buffer);
        return true;
      },
    },
  });
  socket.setNoDelay(true);
  return socket;
}

/** A connection being opened: `wire` settles once it is open (or failed); abort() gives up on it. */
export interface WireOpening {
  wire: Promise<WireSocket>;
  abort(): void;
}

/** The opening's wire, or a rejection `${what} not open within ${timeoutMs} ms` (the opening then aborted). */
export function openWithin(opening: WireOpening, timeoutMs: number, what: string): Promise<WireSocket> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      opening.abort();
      reject(new Error(`${what} not open within ${timeoutMs} ms`));
    }, timeoutMs);
  });
  return Promise.race([opening.wire, late]).finally(() => clearTimeout(timer));
}

/**
 * The life of one connection: opening, then open, then ended (once). Ending while opening
 * rejects the opening; ending once open is reported to onLost; destroy() reports nothing.
 */
class WireState {
  isOpen = false;
  isEnded = false;
  private settle: { resolve: (wire: WireSocket) => void; reject: (error: Error) => void } | undefined;
  readonly opened: Promise<WireSocket>;

  constructor(
    private readonly socket: net.Socket,
    private readonly onLost: (reason: string) => void,
  ) {
    this.opened = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    socket.on('error', (error) => this.end(`${this.label} error: ${error.message}`));
    socket.on('close', () => this.end(`${this.label} closed by peer`));
  }

  label = 'socket';

  open(wire: WireSocket): void {
    if (this.isEnded || this.isOpen) return;
    this.isOpen = true;
    this.settle!.resolve(wire);
  }

  end(reason: string): void {
    if (this.isEnded) return;
    this.isEnded = true;
    this.socket.destroy();
    if (this.isOpen) this.onLost(reason);
    else this.settle!.reject(new Error(reason));
  }

  destroy(): void {
    this.isEnded = true;
    this.socket.destroy();
  }
}

/** A TCP connection. */
export function openTcpWire(host: string, port: number, localAddress: string | undefined, events: WireEvents): WireOpening {
  const socket = connectTcp(host, port, localAddress, (nread, buffer) => {
    if (!state.isEnded) events.onBytes(buffer, 0, nread);
  });
  const state = new WireState(socket, events.onLost);
  const wire: WireSocket = {
    send: (bytes) => void socket.write(bytes),
    bufferedBytes: () => socket.writableLength,
    destroy: () => state.destroy(),
  };
  socket.once('connect', () => state.open(wire));
  return { wire: state.opened, abort: () => state.end('aborted while opening') };
}

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const OP_PONG = 0xa;
/** The longest upgrade response we wait for. */
const MAX_HANDSHAKE_BYTES = 16 * 1024;

/** One frame as a client must send it: FIN, masked with a fresh key. */
function maskedFrame(opcode: number, payload: Buffer): Buffer {
  const length = payload.length;
  const headerBytes = length < 126 ? 2 : length <= 0xffff ? 4 : 10;
  const frame = Buffer.allocUnsafe(headerBytes + 4 + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) frame[1] = 0x80 | length;
  else if (length <= 0xffff) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(length), 2);
  }
  const maskAt = headerBytes;
  randomFillSync(frame, maskAt, 4);
  const m0 = frame[maskAt]!;
  const m1 = frame[maskAt + 1]!;
  const m2 = frame[maskAt + 2]!;
  const m3 = frame[maskAt + 3]!;
  const at = maskAt + 4;
  let i = 0;
  for (; i + 3 < length; i += 4) {
    frame[at + i] = payload[i]! ^ m0;
    frame[at + i + 1] = payload[i + 1]! ^ m1;
    frame[at + i + 2] = payload[i + 2]! ^ m2;
    frame[at + i + 3] = payload[i + 3]! ^ m3;
  }
  const mask = [m0, m1, m2, m3];
  for (; i < length; i++) frame[at + i] = payload[i]! ^ mask[i & 3]!;
  return frame;
}

/**
 * The server's frames, parsed as the bytes come: data payloads go to `onPayload` as they
 * arrive (a frame may span reads); control frames are gathered whole (at most 125 bytes).
 */
class FrameReader {
  private header = Buffer.alloc(14);
  private headerHave = 0;
  /** Payload bytes still to come of the current frame (0: between frames). */
  private payloadLeft = 0;
  private opcode = 0;
  private isMasked = false;
  private control: Buffer[] = [];

  constructor(
    private readonly onPayload: BytesListener,
    private readonly onControl: (opcode: number, payload: Buffer) => void,
    /** Checked before each step: nothing more is handed on once the connection ended. */
    private readonly isEnded: () => boolean,
  ) {}

  read(bytes: Buffer, start: number, end: number): void {
    let at = start;
    while (at < end && !this.isEnded()) {
      if (this.payloadLeft > 0) {
        const take = Math.min(this.payloadLeft, end - at);
        if (this.opcode >= OP_CLOSE) this.control.push(Buffer.from(bytes.subarray(at, at + take)));
        else this.onPayload(bytes, at, at + take);
        at += take;
        this.payloadLeft -= take;
        if (this.payloadLeft === 0 && this.opcode >= OP_CLOSE) this.endControl();
        continue;
      }
      // A header: 2 bytes, then 0, 2 or 8 of length, then 4 of mask if masked.
      this.header[this.headerHave++] = bytes[at++]!;
      if (this.headerHave < 2) continue;
      const lengthCode = this.header[1]! & 0x7f;
      this.isMasked = (this.header[1]! & 0x80) !== 0;
      const needed = 2 + (lengthCode === 126 ? 2 : lengthCode === 127 ? 8 : 0) + (this.isMasked ? 4 : 0);
      if (this.headerHave < needed) continue;
      if (this.isMasked) throw new Error('the server sent a masked frame (RFC 6455 §5.1)');
      this.opcode = this.header[0]! & 0x0f;
      if (![OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG].includes(this.opcode)) throw new Error(`unknown WebSocket opcode ${this.opcode}`);
      this.payloadLeft = lengthCode === 126 ? this.header.readUInt16BE(2) : lengthCode === 127 ? Number(this.header.readBigUInt64BE(2)) : lengthCode;
      this.headerHave = 0;
      if (this.payloadLeft === 0 && this.opcode >= OP_CLOSE) this.endControl();
    }
  }

  private endControl(): void {
    const payload = Buffer.concat(this.control);
    this.control = [];
    this.onControl(this.opcode, payload);
  }
}

export interface WsTarget {
  host: string;
  port: number;
  path: string;
  /** Sec-WebSocket-Protocol to ask for, if any. */
  protocol: string | undefined;
  localAddress: string | undefined;
}

/** A WebSocket connection: open once the server accepted the upgrade. `binary`: our frames' type. */
export function openWsWire(target: WsTarget, binary: boolean, events: WireEvents): WireOpening {
  const key = randomBytes(16).toString('base64');
  const expectedAccept = createHash('sha1')
    .update(key + WS_GUID)
    .digest('base64');
  const dataOpcode = binary ? OP_BINARY : OP_TEXT;
  let handshake: Buffer | undefined = Buffer.alloc(0);

  const frames = new FrameReader(
    events.onBytes,
    (opcode, payload) => {
      if (opcode === OP_PING) socket.write(maskedFrame(OP_PONG, payload));
      else if (opcode === OP_CLOSE) state.end(`WebSocket closed by peer (code ${payload.length >= 2 ? payload.readUInt16BE(0) : 1005})`);
    },
    () => state.isEnded,
  );
  const readFrames = (bytes: Buffer, start: number, end: number): void => {
    try {
      frames.read(bytes, start, end);
    } catch (error) {
      state.end((error as Error).message);
    }
  };

  const socket = connectTcp(target.host, target.port, target.localAddress, (nread, buffer) => {
    if (state.isEnded) return;
    if (handshake === undefined) {
      readFrames(buffer, 0, nread);
      return;
    }
    handshake = Buffer.concat([handshake, buffer.subarray(0, nread)]);
    const headerEnd = handshake.indexOf('\r\n\r\n');
    if (headerEnd === -1) {
      if (handshake.length > MAX_HANDSHAKE_BYTES) state.end('no end to the upgrade response');
      return;
    }
    const head = handshake.subarray(0, headerEnd).toString('latin1');
    const rest = handshake.subarray(headerEnd + 4);
    handshake = undefined;
    const [statusLine = '', ...lines] = head.split('\r\n');
    const accept = lines
      .find((line) => line.toLowerCase().startsWith('sec-websocket-accept:'))
      ?.slice('sec-websocket-accept:'.length)
      .trim();
    if (!/^HTTP\/1\.1 101 /.test(statusLine)) return state.end(`upgrade refused: ${statusLine}`);
    if (accept !== expectedAccept) return state.end('upgrade answered with a wrong Sec-WebSocket-Accept');
    state.open(wire);
    if (rest.length > 0) readFrames(rest, 0, rest.length);
  });
  const state = new WireState(socket, events.onLost);
  state.label = 'WebSocket';

  const wire: WireSocket = {
    send: (bytes) => {
      if (!state.isEnded) socket.write(maskedFrame(dataOpcode, bytes));
    },
    bufferedBytes: () => socket.writableLength,
    destroy: () => state.destroy(),
  };
  socket.once('connect', () => {
    const lines = [
      `GET ${target.path} HTTP/1.1`,
      `Host: ${target.host}:${target.port}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${key}`,
      'Sec-WebSocket-Version: 13',
      ...(target.protocol !== undefined ? [`Sec-WebSocket-Protocol: ${target.protocol}`] : []),
    ];
    socket.write(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  });
  return { wire: state.opened, abort: () => state.end('aborted while opening') };
}
