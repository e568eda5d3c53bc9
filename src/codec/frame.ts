// The Frame type shared by the decoder, the encoder and everything above them.
// Headers are an ordered list: the decoder keeps only the first of a repeated name
// (STOMP 1.2 "Repeated Header Entries"), so a lookup may stop at the first match.

export type StompVersion = '1.0' | '1.1' | '1.2';

export type Header = [name: string, value: string];

export interface Frame {
  command: string;
  headers: Header[];
  body: Buffer;
}

export const CLIENT_COMMANDS = new Set(['CONNECT', 'STOMP', 'SEND', 'SUBSCRIBE', 'UNSUBSCRIBE', 'ACK', 'NACK', 'BEGIN', 'COMMIT', 'ABORT', 'DISCONNECT']);

export const SERVER_COMMANDS = new Set(['CONNECTED', 'MESSAGE', 'RECEIPT', 'ERROR']);

export const EMPTY_BODY: Buffer = Buffer.alloc(0);

/** The value of the first header called `name`, or undefined. */
export function headerValue(headers: readonly Header[], name: string): string | undefined {
  for (let i = 0; i < headers.length; i++) {
    const header = headers[i]!;
    if (header[0] === name) return header[1];
  }
  return undefined;
}

/** CONNECT, STOMP and CONNECTED frames never escape their headers (STOMP 1.2 "Value Encoding"). */
export function isUnescapedCommand(command: string): boolean {
  return command === 'CONNECT' || command === 'STOMP' || command === 'CONNECTED';
}
