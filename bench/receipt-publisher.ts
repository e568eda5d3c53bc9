// A publisher at the broker's pace ("max rate"): batches of SENDs, the last of each asking
// for a RECEIPT, with at most `batchesInFlight` batches not yet confirmed. A broker that
// answers at once lets it go as fast as its socket; one that holds RECEIPTs (flow control)
// slows it to what the subscribers take. This is how a careful real publisher behaves.

import type { LoadClient } from './load-client';
import type { SendBatcher } from './send-frames';

export class ReceiptPacedPublisher {
  /** SEND frames written so far. */
  published = 0;
  /** RECEIPTs received so far. */
  confirmedBatches = 0;
  private readonly client: LoadClient;
  private readonly batcher: SendBatcher;
  private readonly batch: number;
  private readonly batchesInFlight: number;
  private limit: number;
  private nextReceipt = 0;
  private unconfirmed = 0;

  /** Publish up to `total` messages (more may be allowed later with extend()). */
  constructor(client: LoadClient, batcher: SendBatcher, batch: number, batchesInFlight: number, total: number) {
    this.client = client;
    this.batcher = batcher;
    this.batch = batch;
    this.batchesInFlight = batchesInFlight;
    this.limit = total;
    client.onReceipt = (receiptId) => {
      if (!/^\d+$/.test(receiptId)) return;
      this.unconfirmed--;
      this.confirmedBatches++;
      this.pump();
    };
  }

  get isDone(): boolean {
    return this.published >= this.limit;
  }

  /** Whether every batch written has its RECEIPT. */
  get isConfirmed(): boolean {
    return this.unconfirmed === 0;
  }

  /** Stop at what was published so far. */
  stop(): void {
    this.limit = this.published;
  }

  /** Publish `count` more (a marker after the run). */
  extend(count: number): void {
    this.limit = this.published + count;
    this.pump();
  }

  pump(): void {
    while (this.published < this.limit && this.unconfirmed < this.batchesInFlight) {
      const count = Math.min(this.batch, this.limit - this.published);
      this.client.write(this.batcher.build(count, ++this.nextReceipt));
      this.published += count;
      this.unconfirmed++;
    }
  }
}
