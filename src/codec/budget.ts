// One count of bytes held against one maximum, shared by every connection of a server: what
// frames in progress (decoders, WebSocket messages) and frames held by transactions keep.
// A refused reservation is counted; the holder turns it into an ERROR (SERVER_BUSY).

import type { ByteBudget } from './decoder';

export class SharedByteBudget implements ByteBudget {
  readonly maxBytes: number;
  usedBytes = 0;
  /** Reservations refused because they would pass maxBytes. */
  refusedCount = 0;

  constructor(maxBytes: number) {
    this.maxBytes = maxBytes;
  }

  tryReserve(bytes: number): boolean {
    if (this.usedBytes + bytes > this.maxBytes) {
      this.refusedCount++;
      return false;
    }
    this.usedBytes += bytes;
    return true;
  }

  release(bytes: number): void {
    this.usedBytes -= bytes;
  }
}
