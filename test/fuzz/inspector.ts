// The heap of another Node process after a full garbage collection, read through its
// inspector (the process runs with --inspect=127.0.0.1:0): what "memory back near the
// baseline" is measured with, since a heap read without a GC mostly measures GC timing.

import WebSocket from 'ws';

export async function heapAfterGc(inspectorUrl: string): Promise<number> {
  const ws = new WebSocket(inspectorUrl);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let nextId = 0;
  const call = (method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const id = ++nextId;
      const onMessage = (data: Buffer): void => {
        const reply = JSON.parse(data.toString()) as { id?: number; result?: Record<string, unknown>; error?: unknown };
        if (reply.id !== id) return;
        ws.off('message', onMessage);
        if (reply.error !== undefined) reject(new Error(`${method}: ${JSON.stringify(reply.error)}`));
        else resolve(reply.result ?? {});
      };
      ws.on('message', onMessage);
      ws.send(JSON.stringify({ id, method, params }));
    });
  try {
    // Twice: the first collection can leave what finalizers free for the second.
    await call('HeapProfiler.collectGarbage');
    await call('HeapProfiler.collectGarbage');
    const result = await call('Runtime.evaluate', { expression: 'process.memoryUsage().heapUsed', returnByValue: true });
    return Number((result.result as { value: unknown }).value);
  } finally {
    ws.close();
  }
}
