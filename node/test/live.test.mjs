// The live channel in the Node addon (issue 17, item 6): with a 60 s poll,
// a change another terminal pushes reaches this one in under 1 s only
// because the server's poke (GET /v1/events) makes the core's scheduler
// pull at once; with `live: false` the same change waits for the poll.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { TideSync, referenceServer, options, syncUntilIdle, tempDir } from './support.mjs';

/** Resolves with the time `id` first appears in `db`'s change events. */
function arrival(db, id) {
  return new Promise((resolve) => {
    db.subscribe({ collection: 'rooms', id }, (e) => {
      // One changed room comes as `changed`; several in one pulled page as `changes`.
      if ((e.type === 'changed' && e.entity) || (e.type === 'changes' && e.ids.includes(id))) resolve(Date.now());
    });
  });
}

async function idle(db, ms = 10_000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const s = await db.status();
    if (s.first_sync_done && s.phase === 'idle') return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail('no first sync');
}

test('a poke makes the addon pull at once; without the live channel the change waits for the poll', async () => {
  const dir = tempDir('live');
  const server = await referenceServer(dir, ['--rate-limit', '0']);
  const writer = await TideSync.open(options(path.join(dir, 'writer.db'), server, 'desk-1', server.issue('desk-1')));
  const live = await TideSync.open(options(path.join(dir, 'live.db'), server, 'desk-2', server.issue('desk-2'),
    { autoSync: true, pullIntervalMs: 60_000 }));
  const polling = await TideSync.open(options(path.join(dir, 'poll.db'), server, 'desk-3', server.issue('desk-3'),
    { autoSync: true, pullIntervalMs: 60_000, live: false }));
  // A script that waits on background sync keeps its own timer (README).
  const keepAlive = setInterval(() => {}, 1000);
  try {
    await idle(live);
    await idle(polling);
    await new Promise((r) => setTimeout(r, 300)); // the channel opens after the first sync
    for (let n = 0; n < 5; n++) {
      const id = `room-${n}`;
      const seenLive = arrival(live, id);
      const t0 = Date.now();
      await writer.create('rooms', { status: 'clean' }, id);
      await syncUntilIdle(writer);
      const ms = (await Promise.race([seenLive, new Promise((r) => setTimeout(() => r(null), 2_000))]));
      assert.ok(ms !== null, `change ${n} did not reach the live client within 2 s`);
      assert.ok(ms - t0 < 1_000, `change ${n} took ${ms - t0} ms`);
      assert.equal((await live.get('rooms', id)).fields.status, 'clean');
    }
    // The polling client has not pulled since its first sync: 60 s apart.
    assert.equal(await polling.get('rooms', 'room-0'), null, 'no channel, no pull before the interval');
  } finally {
    clearInterval(keepAlive);
    await writer.close();
    await live.close();
    await polling.close();
    await server.stop();
  }
});
