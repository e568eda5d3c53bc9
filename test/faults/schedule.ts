// One fault schedule: a workload of real clients against a FaultCluster while one or two
// faults are injected, all chosen by a PRNG from the schedule's seed, then healing, a quiet
// period, the judged end, a fresh member list per room (audit) and a drain of the queue.
// Returns the history for the checker. The same seed makes the same choices; timing is real,
// so a replay reproduces the schedule, not every interleaving.

import type { ClientTarget, Delivery, SessionClient } from './clients';
import { openSession } from './clients';
import type { FaultCluster } from './cluster';
import type { FaultKind, History, HistoryBounds } from './history';
import { HistoryRecorder } from './history';
import { Random } from '../helpers/seeded-random';

export interface ScheduleTiming {
  /** How long the workload runs operations. */
  opsMs: number;
  /** Between two operations: uniformly up to this. */
  opGapMs: number;
  /** After the faults are healed and the workload is quiet, before the judged end. */
  quietMs: number;
  /** After the end: how long the drain may take to consume every receipted queue message. */
  drainMs: number;
}

export interface ScheduleFault {
  kind: FaultKind;
  slot: string;
  /** Since the schedule began. */
  atMs: number;
  durationMs: number;
}

const FAULT_KINDS: readonly FaultKind[] = ['cut', 'blackhole', 'stall', 'kill', 'pubsub-kill', 'redis-restart-empty', 'redis-restart-data'];

/** The SINGLE_SESSION mode a seed runs under: part of the schedule, so a replay gets it too. */
export function modeOf(seed: string): 'reject' | 'replace' {
  return new Random(`mode:${seed}`).chance(0.5) ? 'reject' : 'replace';
}

/** The faults of a schedule, shorter or longer than the reaping bound. */
export function faultsOf(seed: string, slots: readonly string[], reapBoundMs: number, timing: ScheduleTiming): ScheduleFault[] {
  const random = new Random(`faults:${seed}`);
  const count = random.chance(0.3) ? 2 : 1;
  const faults: ScheduleFault[] = [];
  for (let i = 0; i < count; i++) {
    const kind = random.pick(FAULT_KINDS);
    const isLong = random.chance(0.5);
    const durationMs = kind.endsWith('-kill')
      ? 0
      : kind.startsWith('redis-')
        ? random.between(100, reapBoundMs)
        : isLong
          ? random.between(1.5 * reapBoundMs, 3 * reapBoundMs)
          : random.between(0.2 * reapBoundMs, 0.7 * reapBoundMs);
    faults.push({ kind, slot: random.pick(slots), atMs: random.between(0.1 * timing.opsMs, 0.6 * timing.opsMs), durationMs });
  }
  // Drawn from streams of their own, so that the faults above stay what earlier seeds replayed.
  const extra = new Random(`extra:${seed}`);
  if (extra.chance(0.15)) faults.push({ kind: 'command-kill', slot: extra.pick(slots), atMs: extra.between(0.1 * timing.opsMs, 0.6 * timing.opsMs), durationMs: 0 });
  // Issue 20, point 3: while one instance is away long enough to be reaped, stall another (the
  // likely reaper) about when the reap runs, for longer than the bound, so that the first one
  // resumes in the middle of the reap.
  const reaper = new Random(`reaper:${seed}`);
  const first = faults[0]!;
  if (['cut', 'blackhole', 'stall'].includes(first.kind) && first.durationMs > reapBoundMs && reaper.chance(0.7)) {
    const others = slots.filter((slot) => slot !== first.slot);
    faults.push({ kind: 'stall', slot: reaper.pick(others), atMs: first.atMs + reaper.between(0.6, 1.2) * reapBoundMs, durationMs: reaper.between(1.5, 3) * reapBoundMs });
  }
  return faults;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

interface Role {
  user: string;
  client: SessionClient | undefined;
}

export class ScheduleRun {
  readonly seed: string;
  readonly faults: ScheduleFault[];
  private readonly cluster: FaultCluster;
  private readonly timing: ScheduleTiming;
  private readonly bounds: HistoryBounds;
  private readonly random: Random;
  private readonly recorder = new HistoryRecorder();
  private readonly all: SessionClient[] = [];
  private readonly tag: string;
  private readonly room: string;
  private readonly queue: string;
  private readonly memberUsers: string[];
  /** Every session members opened (a refused CONNECT too): the open ones are the ones acted on. */
  private readonly memberSessions: SessionClient[] = [];
  private readonly watchers: Role[];
  private readonly consumers: Role[];
  private readonly producer: Role;
  /** Members' sessions in the room (each session joins at most once). */
  private readonly joined = new Set<SessionClient>();
  private readonly everJoined = new Set<SessionClient>();
  private readonly held: Delivery[] = [];
  private isDraining = false;
  private readonly consumed = new Set<string>();
  private readonly receipted = new Set<string>();
  private emptyRestartAt = -1;
  private sessionSeq = 0;
  private opSeq = 0;
  private freshTopics = 0;
  private readonly busySlots = new Set<string>();
  /** Instances that answered no CONNECT after the end: the next schedule needs them started afresh. */
  readonly wedged: string[] = [];

  constructor(cluster: FaultCluster, seed: string, timing: ScheduleTiming, bounds: HistoryBounds, reapBoundMs: number) {
    this.cluster = cluster;
    this.seed = seed;
    this.timing = timing;
    this.bounds = bounds;
    this.random = new Random(`ops:${seed}`);
    this.faults = faultsOf(seed, cluster.settings.slots, reapBoundMs, timing);
    this.tag = `s${seed.replace(/[^A-Za-z0-9]/g, '')}`;
    this.room = `/topic/room.${this.tag}`;
    this.queue = `/queue/${this.tag}`;
    this.memberUsers = [0, 1, 2, 3].map((i) => `${this.tag}-u${i}`);
    this.watchers = [0, 1].map((i) => ({ user: `${this.tag}-w${i}`, client: undefined }));
    this.consumers = [0, 1].map((i) => ({ user: `${this.tag}-c${i}`, client: undefined }));
    this.producer = { user: `${this.tag}-p`, client: undefined };
  }

  async run(): Promise<History> {
    try {
      for (const watcher of this.watchers) this.openWatcher(watcher);
      for (const consumer of this.consumers) this.openConsumer(consumer);
      this.openRole(this.producer);
      await Promise.race([Promise.all(this.all.map((c) => c.answered)), sleep(2000)]);
      const faults = this.faults.map((f) => this.inject(f));
      const opsEnd = this.recorder.now() + this.timing.opsMs;
      while (this.recorder.now() < opsEnd) {
        this.operate();
        await sleep(this.random.between(0, this.timing.opGapMs));
      }
      await Promise.all(faults);
      await this.cluster.healAll();
      this.recorder.record({ type: 'quiet' });
      await sleep(this.timing.quietMs);
      this.recorder.record({ type: 'end' });
      await this.audit();
      await this.drain();
      await this.probe();
    } finally {
      for (const client of this.all) client.close(true);
      await Promise.race([Promise.all(this.all.map((c) => c.answered)), sleep(500)]);
    }
    return { seed: this.seed, mode: this.cluster.settings.mode, bounds: this.bounds, events: this.recorder.events };
  }

  private upSlots(): string[] {
    return this.cluster.settings.slots.filter((s) => this.cluster.isUp(s) && !this.busySlots.has(s));
  }

  private open(user: string, onSlot?: string): SessionClient | undefined {
    const slots = this.upSlots();
    if (slots.length === 0 || (onSlot !== undefined && !slots.includes(onSlot))) return undefined;
    const slot = onSlot ?? this.random.pick(slots);
    const transport = this.random.chance(0.5) ? 'ws' : 'tcp';
    const target: ClientTarget = { session: `${this.tag}-k${++this.sessionSeq}`, user, instance: slot, port: this.cluster.port(slot, transport) };
    const client = openSession(transport, target, this.recorder);
    this.all.push(client);
    return client;
  }

  private openRole(role: Role, then?: (client: SessionClient) => void, onSlot?: string): void {
    const client = this.open(role.user, onSlot);
    role.client = client;
    if (client === undefined || then === undefined) return;
    void client.answered.then(() => {
      if (client.isOpen) then(client);
    });
  }

  private openWatcher(role: Role): void {
    this.openRole(role, (c) => c.subscribe('room', this.room, { ack: 'auto', snapshot: true }));
  }

  private openConsumer(role: Role, onSlot?: string): void {
    this.openRole(role, (c) => c.subscribe('queue', this.queue, { ack: 'client-individual', snapshot: false }, (d) => this.onQueueMessage(d)), onSlot);
  }

  private onQueueMessage(delivery: Delivery): void {
    if (this.isDraining || this.random.chance(0.8)) {
      setTimeout(() => delivery.ack(), this.isDraining ? 0 : this.random.between(0, 200));
    } else this.held.push(delivery);
  }

  /** One random operation, given what is open now. */
  private operate(): void {
    const id = (): string => `${this.tag}-m${++this.opSeq}`;
    const openMembers = this.memberSessions.filter((c) => c.isOpen);
    const r = this.random.next();
    if (r < 0.2) {
      // A member connects (again): under reject, refused while its other session lives; under replace, it wins.
      const client = this.open(this.random.pick(this.memberUsers));
      if (client !== undefined) this.memberSessions.push(client);
    } else if (r < 0.35) {
      const candidates = openMembers.filter((c) => !this.everJoined.has(c));
      if (candidates.length > 0) {
        const client = this.random.pick(candidates);
        this.joined.add(client);
        this.everJoined.add(client);
        client.subscribe('room', this.room, { ack: 'auto', snapshot: false });
      }
    } else if (r < 0.42) {
      const candidates = openMembers.filter((c) => this.joined.has(c));
      if (candidates.length > 0) {
        const client = this.random.pick(candidates);
        this.joined.delete(client);
        client.unsubscribe('room');
      }
    } else if (r < 0.5) {
      if (openMembers.length > 0) this.random.pick(openMembers).close(this.random.chance(0.3));
    } else if (r < 0.55) {
      // SUBSCRIBE RECEIPT, then at once a publish from another instance: the message must arrive
      // (issue 20, point 5: the RECEIPT must wait until the relay subscription is in place).
      const subscriber = openMembers.length > 0 ? this.random.pick(openMembers) : undefined;
      const publishers = this.all.filter((c) => c.isOpen && c.instance !== subscriber?.instance);
      if (subscriber !== undefined && publishers.length > 0) {
        const publisher = this.random.pick(publishers);
        const n = ++this.freshTopics;
        const destination = `/topic/fresh.${this.tag}.${n}`;
        subscriber.subscribe(`fresh-${n}`, destination, { ack: 'auto', snapshot: false, onSubscribed: () => publisher.send(destination, id(), true) });
      }
    } else if (r < 0.65) {
      const candidates = [...openMembers, ...this.watchers.map((w) => w.client).filter((c): c is SessionClient => c?.isOpen === true)];
      if (candidates.length > 0) this.random.pick(candidates).send(this.room, id(), true);
    } else if (r < 0.88) {
      if (this.producer.client?.isOpen === true) this.producer.client.send(this.queue, id(), true);
      else if (this.producer.client === undefined || !this.isConnecting(this.producer.client)) this.openRole(this.producer);
    } else if (r < 0.94) {
      // A consumer goes (its held messages go back to the queue) and another comes. It waits
      // for its ACKs' RECEIPTs first: an ACK processed whose RECEIPT never came back would
      // leave the history unable to tell a consumed message from a lost one.
      const role = this.random.pick(this.consumers);
      const leaving = role.client;
      const isAbrupt = this.random.chance(0.3);
      if (leaving?.isOpen === true) void leaving.acksReceipted(1000).then(() => leaving.close(isAbrupt));
      this.openConsumer(role);
    } else {
      for (const role of this.watchers) if (role.client === undefined || (!role.client.isOpen && !this.isConnecting(role.client))) this.openWatcher(role);
      for (const role of this.consumers) if (role.client === undefined || (!role.client.isOpen && !this.isConnecting(role.client))) this.openConsumer(role);
    }
  }

  private isConnecting(client: SessionClient): boolean {
    return !client.isOpen && !this.endedSessions().has(client.id);
  }

  private endedSessions(): Set<string> {
    const ended = new Set<string>();
    for (const e of this.recorder.events) if (e.type === 'error' || e.type === 'closed') ended.add(e.session);
    return ended;
  }

  private async inject(fault: ScheduleFault): Promise<void> {
    await sleep(fault.atMs);
    const { kind, slot } = fault;
    const onInstance = kind.startsWith('redis-') ? undefined : slot;
    if (onInstance !== undefined && !this.cluster.isUp(slot)) return; // killed by the other fault
    if (onInstance !== undefined && kind === 'kill') this.busySlots.add(slot);
    this.recorder.record({ type: 'fault', fault: kind, phase: 'start', instance: onInstance });
    try {
      switch (kind) {
        case 'cut':
        case 'blackhole':
          this.cluster.setLink(slot, kind === 'cut' ? 'refused' : 'blackhole');
          await sleep(fault.durationMs);
          this.cluster.setLink(slot, 'up');
          break;
        case 'stall':
          this.cluster.stall(slot);
          await sleep(fault.durationMs);
          this.cluster.resume(slot);
          break;
        case 'kill':
          await this.cluster.kill(slot);
          await sleep(fault.durationMs);
          await this.cluster.startInstance(slot);
          break;
        case 'pubsub-kill':
        case 'command-kill':
          this.cluster.killConnection(slot, kind === 'pubsub-kill' ? 'pubsub' : 'commands');
          break;
        case 'redis-restart-empty':
        case 'redis-restart-data':
          if (kind === 'redis-restart-empty') this.emptyRestartAt = this.recorder.now();
          await this.cluster.restartRedis(kind === 'redis-restart-data', fault.durationMs);
          break;
      }
    } finally {
      if (kind === 'kill') this.busySlots.delete(slot);
      this.recorder.record({ type: 'fault', fault: kind, phase: 'end', instance: onInstance });
    }
  }

  /** A fresh subscriber's member list of the room: what Redis holds now. */
  private async audit(): Promise<void> {
    const role: Role = { user: `${this.tag}-audit`, client: undefined };
    const snapshot = new Promise<string[] | undefined>((resolve) => {
      this.openRole(role, (c) =>
        c.subscribe('room', this.room, { ack: 'auto', snapshot: true }, (d) => {
          if (d.presence !== undefined) resolve(d.presence.kind === 'snapshot' ? d.presence.users : undefined);
        }),
      );
    });
    const users = await Promise.race([snapshot, sleep(3000).then(() => undefined)]);
    if (users !== undefined) this.recorder.record({ type: 'audit', destination: this.room, users: users.filter((u) => u !== role.user) });
  }

  /** A fresh CONNECT to each instance must be answered; the instances that do not are listed in `wedged`. */
  private async probe(): Promise<void> {
    await Promise.all(
      this.cluster.settings.slots.map(async (slot) => {
        const client = this.open(`${this.tag}-probe-${slot}`, slot);
        if (client === undefined) return;
        const isAnswered = await Promise.race([client.answered.then(() => true), sleep(this.bounds.convergeMs).then(() => false)]);
        this.recorder.record({ type: 'probe', instance: slot, isAnswered });
        if (!isAnswered) this.wedged.push(slot);
      }),
    );
  }

  /** Every consumer acks all it gets from now on (and what it held); one more joins on each instance. */
  private async drain(): Promise<void> {
    this.isDraining = true;
    for (const delivery of this.held.splice(0)) delivery.ack();
    for (const slot of this.cluster.settings.slots) this.openConsumer({ user: `${this.tag}-drain-${slot}`, client: undefined }, slot);
    const deadline = Date.now() + this.timing.drainMs;
    while (Date.now() < deadline) {
      this.collectProgress();
      if ([...this.receipted].every((id) => this.consumed.has(id))) return;
      await sleep(50);
    }
  }

  private collectProgress(): void {
    const sentAt = new Map<string, number>();
    for (const e of this.recorder.events) {
      if (e.type === 'send' && e.destination === this.queue) sentAt.set(e.id, e.t);
      else if (e.type === 'receipt' && e.of === 'send' && sentAt.has(e.id) && sentAt.get(e.id)! > this.emptyRestartAt) this.receipted.add(e.id);
      else if (e.type === 'receipt' && e.of === 'ack') this.consumed.add(e.id);
    }
  }
}
