// Who gets the password-check pool (scrypt: ~50 ms and 16 MiB each, on libuv's 4 threads).
// A counting semaphore whose waiters queue per client, served round robin: a flood from one
// address waits behind itself, and another client's login is served within a turn of each
// client waiting. Each client may have at most maxWaitingPerClient checks waiting; when the
// pool's whole waiting room is full, a newcomer takes the place of the newest waiter of the
// client with the most (when that client has more than one more than the newcomer), so
// many flooding addresses cannot starve a quiet one either. Refusals are SERVER_BUSY.

import { StompError } from '../session/errors';

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
}

const busy = (): StompError => new StompError('SERVER_BUSY', 'too many logins are being checked right now; try again shortly');

export class CheckSlots {
  private running = 0;
  private waitingCount = 0;
  /** Per client, its waiters in arrival order; the Map's order is the round robin's. */
  private readonly waiting = new Map<string, Waiter[]>();
  private readonly maxRunning: number;
  private readonly maxWaiting: number;
  private readonly maxWaitingPerClient: number;

  constructor(maxRunning: number, maxWaiting: number, maxWaitingPerClient: number) {
    this.maxRunning = maxRunning;
    this.maxWaiting = maxWaiting;
    this.maxWaitingPerClient = maxWaitingPerClient;
  }

  /** Resolves when `client` may run a check (then call release()); rejects with SERVER_BUSY. */
  acquire(client: string): Promise<void> {
    if (this.running < this.maxRunning && this.waitingCount === 0) {
      this.running++;
      return Promise.resolve();
    }
    const own = this.waiting.get(client);
    const ownCount = own?.length ?? 0;
    if (ownCount >= this.maxWaitingPerClient) return Promise.reject(busy());
    if (this.waitingCount >= this.maxWaiting && !this.evictFromLargest(ownCount)) return Promise.reject(busy());
    return new Promise((resolve, reject) => {
      const queue = this.waiting.get(client);
      if (queue === undefined) this.waiting.set(client, [{ resolve, reject }]);
      else queue.push({ resolve, reject });
      this.waitingCount++;
    });
  }

  /** A check is done: its slot passes to the next client in turn. */
  release(): void {
    const next = this.waiting.entries().next();
    if (next.done === true) {
      this.running--;
      return;
    }
    const [client, queue] = next.value;
    const waiter = queue.shift()!;
    this.waitingCount--;
    // To the back of the round: the client's next waiter comes after every other client's.
    this.waiting.delete(client);
    if (queue.length > 0) this.waiting.set(client, queue);
    waiter.resolve();
  }

  /** Make room for a client with `ownCount` waiters by refusing another's newest one, if that is fairer. */
  private evictFromLargest(ownCount: number): boolean {
    let largest: [string, Waiter[]] | undefined;
    for (const entry of this.waiting) if (largest === undefined || entry[1].length > largest[1].length) largest = entry;
    if (largest === undefined || largest[1].length <= ownCount + 1) return false;
    largest[1].pop()!.reject(busy());
    this.waitingCount--;
    return true;
  }
}
