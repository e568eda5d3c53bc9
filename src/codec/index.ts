// The codec's public face. The codec imports nothing else of stompd.
export { SharedByteBudget } from './budget';
export { Decoder, DEFAULT_LIMITS } from './decoder';
export type { ByteBudget, DecoderLimits, DecoderOptions } from './decoder';
export { encodeFrame, encodeFrameTail, encodeHeaderLines } from './encoder';
export { escapeHeader, unescapeHeader } from './escape';
export { FrameError } from './errors';
export type { FrameErrorCode } from './errors';
export { CLIENT_COMMANDS, EMPTY_BODY, SERVER_COMMANDS, headerValue, isUnescapedCommand } from './frame';
export type { Frame, Header, StompVersion } from './frame';
