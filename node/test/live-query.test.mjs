// Live queries in the Node addon: the rows of a page at once, then the new
// rows on every change (a local write to a shown row without a read, a new
// row, a pull of another terminal's change), never the same rows twice; the
// result is kept by the core (LiveView). The browser's www/e2e/live-query.test.mjs
// runs the same in Chromium, with another tab as well.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { TideSync, referenceServer, options, tempDir } from './support.mjs';

/** Collects what a live query delivers; `next()` waits for the next delivery. */
function collector() {
  const got = [];
  const waiting = [];
  return {
    got,
    push: (rows) => { got.push(rows); const w = waiting.shift(); if (w) w(rows); },
    next: (ms = 5000) => new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no delivery in ${ms} ms`)), ms);
      waiting.push((rows) => { clearTimeout(t); resolve(rows); });
    }),
  };
}

const ids = (rows) => rows.map((r) => r.id);

test('a live query delivers at once, then on each change, never twice the same rows', async () => {
  const dir = tempDir('live-query');
  const server = await referenceServer(dir);
  try {
    const a = await TideSync.open(options(path.join(dir, 'a.db'), server, 'desk-a', server.issue('desk-a')));
    const b = await TideSync.open(options(path.join(dir, 'b.db'), server, 'desk-b', server.issue('desk-b')));
    for (const id of ['r1', 'r2', 'r3']) await a.create('rooms', { status: 'dirty' }, id);
    await a.create('tasks', { title: 'x' }, 't1');

    const c = collector();
    const first = c.next();
    const stop = a.live({ collection: 'rooms', limit: 10 }, c.push);
    assert.deepEqual(ids(await first), ['r1', 'r2', 'r3'], 'the first result at once');

    // A write to a shown row: applied in place.
    let next = c.next();
    await a.patch('rooms', 'r2', { status: 'clean' });
    const afterPatch = await next;
    assert.equal(afterPatch.find((r) => r.id === 'r2').fields.status, 'clean');
    assert.deepEqual(afterPatch.find((r) => r.id === 'r2'), await a.get('rooms', 'r2'), 'the same view as get(), pending included');

    // A new row inside the page: read again.
    next = c.next();
    await a.create('rooms', { status: 'dirty' }, 'r0');
    assert.deepEqual(ids(await next), ['r0', 'r1', 'r2', 'r3']);

    // Another collection changes nothing.
    const count = c.got.length;
    await a.patch('tasks', 't1', { title: 'y' });
    // Another terminal's change, pulled.
    await a.syncNow();
    await b.syncNow();
    await b.patch('rooms', 'r3', { status: 'inspected' });
    await b.syncNow();
    next = c.next();
    await a.syncNow();
    const pulled = await next;
    assert.equal(pulled.find((r) => r.id === 'r3').fields.status, 'inspected', 'a pulled change arrives');
    // Delivered rows always differ from the delivery before.
    for (let i = 1; i < c.got.length; i++) assert.notDeepEqual(c.got[i], c.got[i - 1], `delivery ${i} repeats ${i - 1}`);
    assert.ok(c.got.length >= count + 1);

    // A delete removes the row; unsubscribing stops deliveries.
    next = c.next();
    await a.delete('rooms', 'r1');
    assert.deepEqual(ids(await next), ['r0', 'r2', 'r3']);
    stop();
    const stopped = c.got.length;
    await a.patch('rooms', 'r0', { status: 'clean' });
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(c.got.length, stopped, 'nothing after unsubscribe');

    // A page: only the rows after `after`, up to `limit` records.
    const p = collector();
    const firstPage = p.next();
    const stopPage = a.live({ collection: 'rooms', after: 'r0', limit: 1 }, p.push);
    assert.deepEqual(ids(await firstPage), [], 'r1 is a tombstone: the page of one record has no live row');
    stopPage();
    assert.throws(() => a.live({ collection: 'rooms', limit: 0 }, () => {}), (e) => e.code === 'BAD_ARGUMENT');
    assert.throws(() => a.live({ collection: 'rooms', where: {} }, () => {}), (e) => e.code === 'BAD_ARGUMENT');
    a.close(); b.close();
  } finally {
    await server.stop();
  }
});
