// Redis key and channel names. The braces are literal: they are Redis Cluster hash tags, so
// every key about one user (`user:{alice}`, `auth:{alice}`) lives in one hash slot, and so
// does everything about one instance (`instance:{a1}`, `instance:{a1}:sessions`,
// `instance:{a1}:users`). A Lua script may only touch keys of one slot on a Cluster: the
// policy decision for a user touches only that user's keys.

export class RedisKeys {
  readonly prefix: string;

  constructor(prefix: string) {
    this.prefix = prefix;
  }

  /** Hash: userId, roles, instanceId, transport, remoteAddress, connectedAt, lastSeenAt. */
  session(sessionId: string): string {
    return `${this.prefix}session:{${sessionId}}`;
  }

  /** The start of every session key, for scripts that derive keys from ids. */
  get sessionPrefix(): string {
    return `${this.prefix}session:{`;
  }

  /** Sorted set: the user's live sessionIds, scored by connect time (oldest first). */
  user(userId: string): string {
    return `${this.prefix}user:{${userId}}`;
  }

  get userPrefix(): string {
    return `${this.prefix}user:{`;
  }

  /** Hash: revokedAt (epoch ms): tokens issued before it are refused (logout everywhere). */
  auth(userId: string): string {
    return `${this.prefix}auth:{${userId}}`;
  }

  /** Set: every live sessionId. */
  get allSessions(): string {
    return `${this.prefix}sessions:all`;
  }

  /** Set: every instance that has started and not yet been reaped. */
  get instances(): string {
    return `${this.prefix}instances`;
  }

  /** String with a short TTL (three heart-beats): the instance's generation; alive while it exists. */
  instance(instanceId: string): string {
    return `${this.prefix}instance:{${instanceId}}`;
  }

  get instancePrefix(): string {
    return `${this.prefix}instance:{`;
  }

  /** Set: the sessions the instance holds (written before they are bound: the reaper's list). */
  instanceSessions(instanceId: string): string {
    return `${this.prefix}instance:{${instanceId}}:sessions`;
  }

  /** Hash: userId → number of the user's sessions on that instance (online users). */
  instanceUsers(instanceId: string): string {
    return `${this.prefix}instance:{${instanceId}}:users`;
  }

  /** String (a day): the generation a survivor reaped; if that generation is in fact alive, its sessions were reported lost. */
  reaped(instanceId: string): string {
    return `${this.prefix}instance:{${instanceId}}:reaped`;
  }

  /** String (JSON), the liveness key's TTL: the instance's report (totals, degraded state) for the others to list. */
  instanceReport(instanceId: string): string {
    return `${this.prefix}instance:{${instanceId}}:report`;
  }

  /** String, no TTL: the generation the instance runs now (deleted when a reap of it finishes, or at a graceful stop). */
  instanceGeneration(instanceId: string): string {
    return `${this.prefix}instance:{${instanceId}}:gen`;
  }

  /**
   * List of JSON commands for the instance (kick, kick-user): what other instances must not
   * lose by pub/sub's at-most-once. The instance pops it every heart-beat; TTL an hour.
   */
  instanceInbox(instanceId: string): string {
    return `${this.prefix}instance:{${instanceId}}:inbox`;
  }

  /** String: a random value written once; missing or changed means Redis lost its data. */
  get incarnation(): string {
    return `${this.prefix}incarnation`;
  }

  /** String, short-lived: which survivor is reaping a dead instance. */
  reaping(instanceId: string): string {
    return `${this.prefix}instance:{${instanceId}}:reaper`;
  }

  /**
   * Stream: a queue's messages, with one consumer group (`stompd`) whose consumers are the
   * instances. Every key of one queue shares the hash tag `{<destination>}`: one slot, so
   * the queue scripts may touch them together on a Cluster.
   */
  queue(destination: string): string {
    return `${this.prefix}queue:{${destination}}`;
  }

  /** Hash: instanceId → how many of the queue's consumers it holds. */
  queueConsumers(destination: string): string {
    return `${this.prefix}queue:{${destination}}:consumers`;
  }

  /** List: entries given back for redelivery, `<entryId>|<fromInstance>|<atMs>|<wasDelivered 0/1>`. */
  queueRedeliver(destination: string): string {
    return `${this.prefix}queue:{${destination}}:redeliver`;
  }

  /** Hash: dropped (MAX_QUEUE_MESSAGES), expired. */
  queueCounts(destination: string): string {
    return `${this.prefix}queue:{${destination}}:counts`;
  }

  /** Set: every queue that exists (MAX_QUEUES counts its members). */
  get queues(): string {
    return `${this.prefix}queues`;
  }

  /** Set: the queues an instance consumes from (the reaper's list of where its unacknowledged messages are). */
  instanceQueues(instanceId: string): string {
    return `${this.prefix}instance:{${instanceId}}:queues`;
  }

  /** Pub/sub channel: "the queue has something new", so instances with consumers read it now. */
  queueWakeChannel(destination: string): string {
    return `${this.prefix}queue-wake:${destination}`;
  }

  /** Pub/sub channel of a topic or user destination's route key. */
  destinationChannel(routeKey: string): string {
    return `${this.prefix}dest:${routeKey}`;
  }

  /** Pub/sub channel for control messages every instance hears (kicks, logouts). */
  get controlChannel(): string {
    return `${this.prefix}control`;
  }

  /** Pub/sub channel every instance hears: which destinations' messages wait on an instance (flow control). */
  get flowChannel(): string {
    return `${this.prefix}flow`;
  }
}
