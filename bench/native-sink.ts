// Subscribers that cost the machine next to nothing: bench/stomp-sink.c, built here with the
// system's C compiler and run as a child process, holds COUNT subscriptions to one broker and
// counts their MESSAGEs (NUL bytes) with epoll. For a bench whose load generator shares the
// brokers' cores (bench/cross-instance --native-sink): Node's readers would take the core a
// second instance needs. It records no latency: the bench keeps a few Node subscribers for that.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';

const SOURCE = path.join(__dirname, '..', '..', 'bench', 'stomp-sink.c');
let built: string | undefined;

/** Compile the sink (gcc or cc on PATH) into the temp directory, once per version of its source; returns the binary's path. */
export function buildNativeSink(): string {
  if (built !== undefined) return built;
  const source = fs.readFileSync(SOURCE);
  const binary = path.join(os.tmpdir(), `stomp-sink-${createHash('sha256').update(source).digest('hex').slice(0, 16)}`);
  if (!fs.existsSync(binary)) {
    const compiler = process.env.CC ?? 'cc';
    const partial = `${binary}.${process.pid}`;
    try {
      execFileSync(compiler, ['-O2', '-o', partial, SOURCE], { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (error) {
      throw new Error(`could not build ${SOURCE} with ${compiler}: ${(error as { stderr?: Buffer }).stderr?.toString().trim() ?? String(error)}`);
    }
    fs.renameSync(partial, binary); // whole or not at all, for a bench started beside this one
  }
  built = binary;
  return binary;
}

export class NativeSink {
  /** MESSAGEs counted over all its connections. */
  total = 0;
  /** Connections that ended. */
  lost = 0;
  lostReason: string | undefined;
  readonly pid: number;
  private isClosing = false;

  private constructor(private readonly child: ChildProcess) {
    this.pid = child.pid!;
  }

  /** Start `count` subscriptions to `destination`; resolves when every RECEIPT is in. `onCount`: the new total. */
  static open(host: string, port: number, count: number, destination: string, onCount: (total: number) => void, timeoutMs: number): Promise<NativeSink> {
    const child = spawn(buildNativeSink(), [host, String(port), String(count), destination], { stdio: ['pipe', 'pipe', 'inherit'] });
    const sink = new NativeSink(child);
    return new Promise((resolve, reject) => {
      let isReady = false;
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`stomp-sink: ${count} subscriptions not ready within ${timeoutMs} ms`));
      }, timeoutMs);
      readline.createInterface({ input: child.stdout }).on('line', (line) => {
        const [kind, first, second] = line.split(' ');
        if (kind === 'count') {
          sink.total = Number(first);
          sink.lost = Number(second);
          onCount(sink.total);
        } else if (kind === 'lost') {
          sink.lost++;
          sink.lostReason ??= `stomp-sink connection ${first}: ${line.split(' ').slice(2).join(' ')}`;
        } else if (kind === 'ready') {
          isReady = true;
          clearTimeout(timer);
          resolve(sink);
        } else if (kind === 'error') {
          clearTimeout(timer);
          reject(new Error(`stomp-sink: ${line.slice('error '.length)}`));
        }
      });
      child.once('error', (error) => {
        clearTimeout(timer);
        if (!isReady) reject(new Error(`stomp-sink could not run: ${error.message}`));
      });
      child.once('exit', (code, signal) => {
        if (isReady) {
          // Its subscriptions went with it: every one counts as lost, unless we stopped it.
          if (!sink.isClosing) {
            sink.lost = count;
            sink.lostReason ??= `stomp-sink exited (${signal ?? code})`;
          }
          return;
        }
        clearTimeout(timer);
        reject(new Error(`stomp-sink exited (${signal ?? code}) before its subscriptions were ready`));
      });
    });
  }

  close(): void {
    this.isClosing = true;
    this.child.stdin?.end();
    this.child.kill('SIGTERM');
  }
}
