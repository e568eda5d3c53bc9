// The ERROR texts of sessions the Redis registry no longer holds: written by the registry
// (a refresh that finds its record gone) and by its scripts (a holder dropped or replaced,
// told through its instance's inbox), so each text is spelt once.

export const DISPLACED_TEXT = 'this session is no longer registered (kicked, replaced, or taken for lost while its instance was out of touch); reconnect';
export const DEAD_HOLDER_TEXT = 'the instance holding this session was out of touch and the user connected again elsewhere; reconnect';
export const REPLACED_TEXT = 'replaced by a newer session of the same user';
