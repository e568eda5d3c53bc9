// Messages waiting for a consumer, oldest first: a memory queue's stored messages, or what
// an instance read ahead from a Redis stream. A circular buffer with a head index, so taking
// from the front (every delivery, every ACK that frees room) and putting given-back messages
// back in front (NACK, a consumer gone) cost O(1) per message, whatever the depth.

/** Below this capacity a drained backlog keeps its buffer; above, it halves when a quarter full. */
const MIN_SHRINK_SLOTS = 64;

export class Backlog<T> {
  private slots: (T | undefined)[] = new Array<T | undefined>(8);
  /** Index of the oldest item in `slots`. */
  private head = 0;
  private count = 0;

  get length(): number {
    return this.count;
  }

  /** The oldest item; undefined when empty. */
  peek(): T | undefined {
    return this.count === 0 ? undefined : this.slots[this.head];
  }

  /** The item `index` places from the front. */
  at(index: number): T | undefined {
    if (index < 0 || index >= this.count) return undefined;
    return this.slots[(this.head + index) & (this.slots.length - 1)];
  }

  push(item: T): void {
    if (this.count === this.slots.length) this.grow();
    this.slots[(this.head + this.count) & (this.slots.length - 1)] = item;
    this.count++;
  }

  /** Put `items` in front, in their order (the first of them becomes the oldest). */
  pushFront(items: readonly T[]): void {
    while (this.count + items.length > this.slots.length) this.grow();
    const mask = this.slots.length - 1;
    for (let i = items.length - 1; i >= 0; i--) {
      this.head = (this.head - 1) & mask;
      this.slots[this.head] = items[i];
    }
    this.count += items.length;
  }

  /** Remove and return the oldest item. */
  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const item = this.slots[this.head];
    this.slots[this.head] = undefined; // not kept alive by the buffer
    this.head = (this.head + 1) & (this.slots.length - 1);
    this.count--;
    if (this.slots.length > MIN_SHRINK_SLOTS && this.count < this.slots.length >> 2) this.resize(this.slots.length >> 1);
    return item;
  }

  /** Remove every item, returning them oldest first. */
  takeAll(): T[] {
    const all: T[] = [];
    for (let item = this.shift(); item !== undefined; item = this.shift()) all.push(item);
    this.slots = new Array<T | undefined>(8);
    this.head = 0;
    return all;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.count; i++) yield this.slots[(this.head + i) & (this.slots.length - 1)]!;
  }

  private grow(): void {
    this.resize(this.slots.length * 2);
  }

  /** New capacity (a power of two, so an index wraps with a mask), oldest first at 0. */
  private resize(capacity: number): void {
    const resized = new Array<T | undefined>(capacity);
    for (let i = 0; i < this.count; i++) resized[i] = this.slots[(this.head + i) & (this.slots.length - 1)];
    this.slots = resized;
    this.head = 0;
  }
}
