// The system under test for the fault suite: one real redis-server and a few stompd processes,
// each reaching Redis only through its own RedisProxy in this process, and every fault the
// suite injects: cut or black-hole an instance's Redis traffic, SIGSTOP/SIGCONT it, kill -9
// it (and start a new instance in its slot), kill its pub/sub or command connection in Redis, kill
// Redis and start it again empty or with its data (AOF, fsync always: a kill loses nothing).

import fs from 'node:fs';
import path from 'node:path';
import { BrokerProcess } from '../helpers/broker-process';
import { startRedis } from '../helpers/redis';
import type { RedisServer } from '../helpers/redis';
import { RedisProxy } from './proxy';
import type { ProxyMode } from './proxy';

export interface ClusterSettings {
  slots: string[];
  mode: 'reject' | 'replace';
  instanceHeartbeatMs: number;
  /** Rooms: PRESENCE_DESTINATIONS. */
  presenceDestinations: string;
}

interface Slot {
  name: string;
  proxy: RedisProxy;
  broker: BrokerProcess | undefined;
  starts: number;
  isStopped: boolean;
  /** What earlier processes of the slot wrote to stderr (a crash's stack), the last few kB. */
  earlierStderr: string;
}

export class FaultCluster {
  readonly redis: RedisServer;
  readonly settings: ClusterSettings;
  private readonly slots = new Map<string, Slot>();
  private readonly runId = `${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
  private readonly redisDir: string;
  /** Redis restarts one at a time (two overlapping faults wait for each other). */
  private redisRestarts: Promise<void> = Promise.resolve();

  private constructor(redis: RedisServer, settings: ClusterSettings) {
    this.redis = redis;
    this.settings = settings;
    this.redisDir = redis.cli('config', 'get', 'dir').trim().split('\n')[1]!.trim();
  }

  static async start(settings: ClusterSettings): Promise<FaultCluster> {
    const redis = await startRedis({ appendonly: true, args: ['--appendfsync', 'always'] });
    const cluster = new FaultCluster(redis, settings);
    try {
      for (const name of settings.slots) cluster.slots.set(name, { name, proxy: await RedisProxy.start(redis.port), broker: undefined, starts: 0, isStopped: false, earlierStderr: '' });
      await Promise.all(settings.slots.map((name) => cluster.startInstance(name)));
    } catch (error) {
      await cluster.stop();
      throw error;
    }
    return cluster;
  }

  private slot(name: string): Slot {
    const slot = this.slots.get(name);
    if (slot === undefined) throw new Error(`no instance slot ${name}`);
    return slot;
  }

  /** The broker in `name`'s slot is running (not killed); it may be stopped or cut off. */
  isUp(name: string): boolean {
    const broker = this.slot(name).broker;
    return broker !== undefined && broker.child.exitCode === null && broker.child.signalCode === null;
  }

  port(name: string, transport: 'tcp' | 'ws'): number {
    const broker = this.slot(name).broker;
    if (broker === undefined) throw new Error(`instance ${name} is not running`);
    return transport === 'tcp' ? broker.tcpPort : broker.wsPort;
  }

  /** A new process in the slot (a new instance id, as a restarted instance gets). */
  async startInstance(name: string): Promise<void> {
    const slot = this.slot(name);
    slot.starts++;
    if (slot.broker !== undefined) slot.earlierStderr = `${slot.earlierStderr}${slot.broker.errorOutput}`.slice(-8000);
    slot.broker = await BrokerProcess.start({
      REDIS_URL: slot.proxy.url,
      INSTANCE_ID: `fault-${this.runId}-${name}-${slot.starts}`,
      INSTANCE_HEARTBEAT_MS: String(this.settings.instanceHeartbeatMs),
      SINGLE_SESSION: this.settings.mode,
      PRESENCE_DESTINATIONS: this.settings.presenceDestinations,
      HEARTBEAT: '0,0',
      LOG_LEVEL: 'info',
      SHUTDOWN_TIMEOUT_MS: '2000',
    });
  }

  /** kill -9 and a new instance in the slot: what a wedged instance needs before the next schedule. */
  async replace(name: string): Promise<void> {
    await this.kill(name);
    await this.startInstance(name);
  }

  setLink(name: string, mode: ProxyMode): void {
    this.slot(name).proxy.setMode(mode);
  }

  stall(name: string): void {
    const slot = this.slot(name);
    if (!this.isUp(name) || slot.isStopped) return;
    slot.isStopped = true;
    slot.broker!.child.kill('SIGSTOP');
  }

  resume(name: string): void {
    const slot = this.slot(name);
    if (!slot.isStopped) return;
    slot.isStopped = false;
    if (this.isUp(name)) slot.broker!.child.kill('SIGCONT');
  }

  async kill(name: string): Promise<void> {
    const slot = this.slot(name);
    const broker = slot.broker;
    if (broker === undefined) return;
    if (slot.isStopped) this.resume(name);
    await broker.kill();
    slot.broker = undefined;
  }

  /**
   * Kill the slot's pub/sub connection (`pubsub`) or its command connection (`commands`) in
   * Redis (CLIENT KILL ID): found as a connection whose address is one of this slot's proxy
   * connections, told apart by whether it holds subscriptions. Returns how many were killed
   * (0: none found, e.g. the instance is cut off).
   */
  killConnection(name: string, which: 'pubsub' | 'commands'): number {
    const ports = new Set(this.slot(name).proxy.upstreamPorts());
    let killed = 0;
    let list: string;
    try {
      list = this.redis.cli('client', 'list');
    } catch {
      return 0; // Redis is down (another fault restarts it): the connections are gone anyway
    }
    for (const line of list.split('\n')) {
      const fields = new Map(
        line
          .trim()
          .split(' ')
          .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
      );
      const port = Number((fields.get('addr') ?? '').split(':').pop());
      const subscriptions = Number(fields.get('sub') ?? 0) + Number(fields.get('psub') ?? 0) + Number(fields.get('ssub') ?? 0);
      const isSubscriber = subscriptions > 0 || (fields.get('name') ?? '').endsWith(':sub');
      if (!ports.has(port) || isSubscriber !== (which === 'pubsub')) continue;
      try {
        this.redis.cli('client', 'kill', 'id', fields.get('id')!);
        killed++;
      } catch {
        // gone meanwhile
      }
    }
    return killed;
  }

  /** SIGKILL Redis; start it again with its AOF (`keepData`) or with nothing. */
  restartRedis(keepData: boolean, downMs: number): Promise<void> {
    const restart = async (): Promise<void> => {
      await this.redis.kill();
      if (!keepData) {
        for (const entry of fs.readdirSync(this.redisDir)) if (entry.startsWith('appendonly') || entry.endsWith('.rdb')) fs.rmSync(path.join(this.redisDir, entry), { recursive: true, force: true });
      }
      await new Promise((resolve) => setTimeout(resolve, downMs));
      await this.redis.restart();
    };
    this.redisRestarts = this.redisRestarts.then(restart);
    return this.redisRestarts;
  }

  /** Undo every fault that is still on: links up, processes continued, killed slots started again. */
  async healAll(): Promise<void> {
    for (const slot of this.slots.values()) {
      slot.proxy.setMode('up');
      this.resume(slot.name);
    }
    for (const slot of this.slots.values()) if (!this.isUp(slot.name)) await this.startInstance(slot.name);
  }

  /** What the slot's processes wrote to stderr (a crash's stack), for a failure report. */
  stderr(name: string): string {
    const slot = this.slot(name);
    return `${slot.earlierStderr}${slot.broker?.errorOutput ?? ''}`;
  }

  /** Log lines of the slot's current process (for a failure report). */
  logs(name: string): readonly { msg?: string; level?: number }[] {
    return this.slot(name).broker?.lines ?? [];
  }

  async stop(): Promise<void> {
    for (const slot of this.slots.values()) {
      this.resume(slot.name);
      slot.proxy.setMode('up');
    }
    await Promise.all([...this.slots.values()].map(async (slot) => slot.broker?.kill()));
    await Promise.all([...this.slots.values()].map((slot) => slot.proxy.close()));
    await this.redis.stop();
  }
}
