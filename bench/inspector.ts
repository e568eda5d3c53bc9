// Another Node process seen through its inspector (it runs with --inspect=127.0.0.1:0): its
// memory after a full garbage collection, and heap snapshots. What "memory back near the
// baseline" and "memory per idle session" are measured with, since a reading without a GC
// mostly measures GC timing.

import { createWriteStream } from 'node:fs';
import WebSocket from 'ws';

/** process.memoryUsage() of the other process. */
export interface RemoteMemoryUsage {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

type Reply = { id?: number; method?: string; params?: Record<string, unknown>; result?: Record<string, unknown>; error?: unknown };

/** One DevTools protocol connection to an inspector URL (ws://127.0.0.1:PORT/UUID). */
export class InspectorSession {
  private nextId = 0;
  private readonly events = new Map<string, (params: Record<string, unknown>) => void>();

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const reply = JSON.parse(data.toString()) as Reply;
      if (reply.method !== undefined) this.events.get(reply.method)?.(reply.params ?? {});
    });
  }

  static async open(inspectorUrl: string): Promise<InspectorSession> {
    const ws = new WebSocket(inspectorUrl, { maxPayload: 1 << 30 });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new InspectorSession(ws);
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const id = ++this.nextId;
      const onMessage = (data: Buffer): void => {
        const reply = JSON.parse(data.toString()) as Reply;
        if (reply.id !== id) return;
        this.ws.off('message', onMessage);
        if (reply.error !== undefined) reject(new Error(`${method}: ${JSON.stringify(reply.error)}`));
        else resolve(reply.result ?? {});
      };
      this.ws.on('message', onMessage);
      this.ws.send(JSON.stringify({ id, method, params }));
    });
  }

  /** Full collections, twice: the first can leave what finalizers free for the second. */
  async collectGarbage(): Promise<void> {
    await this.call('HeapProfiler.collectGarbage');
    await this.call('HeapProfiler.collectGarbage');
  }

  async memoryUsage(): Promise<RemoteMemoryUsage> {
    const result = await this.call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
    return JSON.parse(String((result.result as { value: unknown }).value)) as RemoteMemoryUsage;
  }

  /** A heap snapshot written to `path` (open it in Chrome DevTools → Memory). */
  async writeHeapSnapshot(path: string): Promise<void> {
    const file = createWriteStream(path);
    this.events.set('HeapProfiler.addHeapSnapshotChunk', (params) => file.write(String(params.chunk)));
    try {
      await this.call('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
    } finally {
      this.events.delete('HeapProfiler.addHeapSnapshotChunk');
      await new Promise<void>((resolve, reject) => file.end((error?: Error | null) => (error ? reject(error) : resolve())));
    }
  }

  close(): void {
    this.ws.close();
  }
}

/** heapUsed after a full collection. */
export async function heapAfterGc(inspectorUrl: string): Promise<number> {
  const session = await InspectorSession.open(inspectorUrl);
  try {
    await session.collectGarbage();
    return (await session.memoryUsage()).heapUsed;
  } finally {
    session.close();
  }
}
