import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Destinations } from '../../src/broker/destinations';

const destinations = new Destinations({ topicPrefix: '/topic/', queuePrefix: '/queue/', userPrefix: '/user/' });

describe('destination names', () => {
  it('kinds by prefix', () => {
    assert.equal(destinations.kindOf('/topic/a'), 'topic');
    assert.equal(destinations.kindOf('/queue/a.b'), 'queue');
    assert.equal(destinations.kindOf('/user/queue/a'), 'user');
    assert.equal(destinations.kindOf('/user/bob/topic/a'), 'user');
    for (const none of ['/topic/', '/queue/', '/user/', '/user/bob', '/user/bob/inbox', '/user//queue/a', 'topic/a', '/exchange/a']) {
      assert.equal(destinations.kindOf(none), undefined, none);
    }
  });

  it('user destinations in both forms resolve to one route key', () => {
    assert.deepEqual(destinations.parseUser('/user/queue/a'), { userId: undefined, inner: '/queue/a' });
    assert.deepEqual(destinations.parseUser('/user/bob/queue/a/b'), { userId: 'bob', inner: '/queue/a/b' });
    assert.equal(destinations.userRouteKey('bob', '/queue/a'), '/user/bob/queue/a');
    assert.equal(destinations.userFacingName('/queue/a'), '/user/queue/a');
  });
});
