// Embedded mode stays embedded: without REDIS_URL nothing Redis-related is loaded or started.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';

describe('embedded mode', () => {
  it('a broker started without REDIS_URL never loads ioredis or src/cluster/', () => {
    const script = `
      const { startBroker } = require(${JSON.stringify(path.resolve(__dirname, '../helpers/broker.js'))});
      startBroker({ HEARTBEAT: '0,0' }).then(async (b) => {
        const loaded = Object.keys(require.cache).filter((f) => f.includes('ioredis') || f.includes('/src/cluster/'));
        await b.stop();
        process.stdout.write(JSON.stringify({ loaded, health: b.clusterHealth() ?? null }));
      });`;
    const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 15000 });
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), { loaded: [], health: null });
  });

  it('with REDIS_URL set, the cluster layer is what loads it (the check above can fail)', () => {
    const script = `
      const { loadConfig } = require(${JSON.stringify(path.resolve(__dirname, '../../src/config.js'))});
      require(${JSON.stringify(path.resolve(__dirname, '../../src/cluster/redis-client.js'))});
      process.stdout.write(String(Object.keys(require.cache).some((f) => f.includes('ioredis'))));
      loadConfig({});`;
    const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 15000 });
    assert.equal(result.stdout, 'true', result.stderr);
  });
});
