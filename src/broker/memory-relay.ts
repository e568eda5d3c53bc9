// The Relay in one process: several routers (instances) joined to one hub reach each other's
// subscribers without a network, for brokers embedded side by side and for the relay's
// contract suite. It keeps the promises RedisRelay keeps: a message reaches every other
// instance with local subscribers on its route key (never its own), as an equal but separate
// Message, in the order one instance published; interest is in place when setInterest's
// promise resolves. Delivery is asynchronous (a microtask), like a network's: publish never
// re-enters the publishing router.

import { Message } from './message';
import type { Relay } from './relay';

interface Member {
  deliver(message: Message): void;
  interests: Set<string>;
}

export class MemoryRelayHub {
  private readonly members = new Map<string, Member>();

  /** The relay of instance `instanceId`; `deliver` gets the other instances' messages (Router.deliverRemote). */
  join(instanceId: string, deliver: (message: Message) => void): Relay & { leave(): void } {
    if (this.members.has(instanceId)) throw new Error(`instance ${instanceId} joined this hub already`);
    const member: Member = { deliver, interests: new Set() };
    this.members.set(instanceId, member);
    return {
      publish: (message) => this.publish(instanceId, message),
      setInterest: (routeKey, isInterested) => {
        if (isInterested) member.interests.add(routeKey);
        else member.interests.delete(routeKey);
        return isInterested ? Promise.resolve() : undefined;
      },
      leave: () => void this.members.delete(instanceId),
    };
  }

  private publish(origin: string, message: Message): void {
    for (const [instanceId, member] of this.members) {
      if (instanceId === origin || !member.interests.has(message.routeKey)) continue;
      const copy = new Message(message.id, message.destination, message.routeKey, message.headers, message.body);
      queueMicrotask(() => {
        // Interest lost meanwhile: dropped, as an unsubscribed channel drops it.
        if (this.members.get(instanceId) === member && member.interests.has(copy.routeKey)) member.deliver(copy);
      });
    }
  }
}
