// Destination names: which kind a name is, and how user destinations resolve.
//
// User destinations follow Spring's convention. A session subscribes to
// `/user/queue/x` (or `/user/topic/x`); a SEND to `/user/<userId>/queue/x` reaches every
// session of that user subscribed to `/user/queue/x`, and nobody else. Both resolve to
// one route key, `/user/<userId>/queue/x`, on which delivery is a fan-out to that user's
// subscriptions. A user id cannot contain "/" (isAddressableUserId; refused at CONNECT).

export type DestinationKind = 'topic' | 'queue' | 'user';

export interface DestinationPrefixes {
  topicPrefix: string;
  queuePrefix: string;
  userPrefix: string;
}

export interface UserDestination {
  /** The addressed user; undefined in the subscription form (`/user/queue/x`), which means "me". */
  userId: string | undefined;
  /** The destination inside the user's space: `/queue/x` or `/topic/x`. */
  inner: string;
}

/**
 * Control characters (C0, DEL, C1) and the Unicode line and paragraph separators: no
 * destination needs them, and each is a way to make a name look different to a pattern,
 * a log line or a person than it is.
 */
// eslint-disable-next-line no-control-regex -- control characters are what this looks for
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;

export function hasControlCharacters(destination: string): boolean {
  return CONTROL_CHARACTERS.test(destination);
}

export class Destinations {
  readonly prefixes: DestinationPrefixes;

  constructor(prefixes: DestinationPrefixes) {
    this.prefixes = prefixes;
  }

  /** The kind of a destination name, or undefined when nothing matches. */
  kindOf(destination: string): DestinationKind | undefined {
    const { topicPrefix, queuePrefix, userPrefix } = this.prefixes;
    if (destination.length > topicPrefix.length && destination.startsWith(topicPrefix)) return 'topic';
    if (destination.length > queuePrefix.length && destination.startsWith(queuePrefix)) return 'queue';
    if (destination.startsWith(userPrefix) && this.parseUser(destination) !== undefined) return 'user';
    return undefined;
  }

  /** Split a user destination; undefined when it is none. */
  parseUser(destination: string): UserDestination | undefined {
    const { userPrefix } = this.prefixes;
    if (!destination.startsWith(userPrefix)) return undefined;
    const rest = destination.slice(userPrefix.length - 1); // keep the slash: "/queue/x" or "/bob/queue/x"
    if (this.isPlain(rest)) return { userId: undefined, inner: rest };
    const slash = rest.indexOf('/', 1);
    if (slash <= 1) return undefined;
    const inner = rest.slice(slash);
    return this.isPlain(inner) ? { userId: rest.slice(1, slash), inner } : undefined;
  }

  /**
   * Whether `/user/<userId>/queue/x` can address this user unambiguously: no "/" in it, and
   * not a name that reads as the subscription form (`queue` with QUEUE_PREFIX /queue/).
   */
  isAddressableUserId(userId: string): boolean {
    if (userId === '' || userId.includes('/')) return false;
    const form = `/${userId}/`;
    return !this.prefixes.topicPrefix.startsWith(form) && !this.prefixes.queuePrefix.startsWith(form);
  }

  /** The route key of a user destination as `userId` sees or addresses it. */
  userRouteKey(userId: string, inner: string): string {
    return `${this.prefixes.userPrefix}${userId}${inner}`;
  }

  /** `/user/queue/x`: how the owner sees its own destination. */
  userFacingName(inner: string): string {
    return `${this.prefixes.userPrefix.slice(0, -1)}${inner}`;
  }

  private isPlain(destination: string): boolean {
    const { topicPrefix, queuePrefix } = this.prefixes;
    return (destination.length > topicPrefix.length && destination.startsWith(topicPrefix)) || (destination.length > queuePrefix.length && destination.startsWith(queuePrefix));
  }
}
