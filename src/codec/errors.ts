// Typed decode errors. Each carries a stable code that the session puts at the
// start of the ERROR frame's `message` header, so clients and tests can branch on it.

export type FrameErrorCode =
  | 'FRAME_TOO_LARGE'
  | 'TOO_MANY_HEADERS'
  | 'HEADER_LINE_TOO_LONG'
  | 'BAD_ESCAPE'
  | 'MALFORMED_HEADER'
  | 'UNKNOWN_COMMAND'
  | 'BAD_CONTENT_LENGTH'
  | 'MISSING_NUL'
  /** Not bad bytes: the server's budget for frames in progress (all connections) is spent. */
  | 'SERVER_BUSY';

export class FrameError extends Error {
  readonly code: FrameErrorCode;

  constructor(code: FrameErrorCode, message: string) {
    super(message);
    this.name = 'FrameError';
    this.code = code;
  }
}
