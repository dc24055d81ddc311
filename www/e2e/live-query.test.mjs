// Live queries in headless Chromium: the rows of a page at once, then the
// new rows on every change — a local write to a shown row (applied without
// a read), a new row, another tab's write, a pull — never the same rows
// twice. The Node addon's node/test/live-query.test.mjs runs the same.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { startStaticServer } from '../server.mjs';
import { ROOT, CHROMIUM, ARGS, openPage } from './chromium.mjs';
import { startSyncServer } from './sync-server.mjs';


let sync, web;
before(async () => {
  sync = await startSyncServer();
  web = await startStaticServer({ root: ROOT, upstream: sync.url });
});
after(async () => { await web?.close(); await sync?.close(); });

test('a live query delivers at once, then on each change in this tab, another tab and a pull', async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  try {
    const ctx = await browser.newContext();
    const [a, b] = [await openPage(ctx, web.url), await openPage(ctx, web.url)];
    const opts = { dbName: 'live-query', key: { webCrypto: true }, serverUrl: '', apiKey: sync.apiKey,
      terminalId: sync.terminal, branchId: sync.branch, autoSync: false };
    // Tab A: the query, and a helper that waits for its next delivery.
    await a.evaluate(async (opts) => {
      window.db = await TideSync.open(opts);
      for (const id of ['r1', 'r2', 'r3']) await db.create('rooms', { status: 'dirty' }, id);
      window.got = [];
      window.waiters = [];
      window.nextRows = () => new Promise((resolve) => window.waiters.push(resolve));
      const first = nextRows();
      window.stop = db.live({ collection: 'rooms', limit: 10 }, (rows) => {
        got.push(rows);
        const w = waiters.shift(); if (w) w(rows);
      });
      window.first = await first;
    }, opts);
    const ids = (rows) => rows.map((r) => r.id);
    assert.deepEqual(ids(await a.evaluate(() => first)), ['r1', 'r2', 'r3'], 'at once');

    const patched = await a.evaluate(async () => {
      const next = nextRows();
      await db.patch('rooms', 'r2', { status: 'clean' });
      const rows = await next;
      return { row: rows.find((r) => r.id === 'r2'), view: await db.get('rooms', 'r2') };
    });
    assert.deepEqual(patched.row, patched.view, 'a local write: the same view as get()');
    assert.equal(patched.row.fields.status, 'clean');

    assert.deepEqual(ids(await a.evaluate(async () => {
      const next = nextRows();
      await db.create('rooms', { status: 'dirty' }, 'r0');
      return next;
    })), ['r0', 'r1', 'r2', 'r3'], 'a new row');

    // Another tab of the same database writes: tab A's query sees it.
    const next = a.evaluate(() => nextRows());
    await b.evaluate(async (opts) => {
      const db = await TideSync.open(opts);
      await db.patch('rooms', 'r3', { status: 'inspected' });
    }, opts);
    const fromTab = await next;
    assert.equal(fromTab.find((r) => r.id === 'r3').fields.status, 'inspected', 'another tab\'s write');

    // A pull: another device (its own browser profile and database) changes
    // r1 on the server; tab A's syncNow pulls it into the query.
    await a.evaluate(() => db.syncNow());
    const device = await openPage(await browser.newContext(), web.url);
    await device.evaluate(async (opts) => {
      const db = await TideSync.open(opts);
      await db.syncNow();
      await db.patch('rooms', 'r1', { status: 'out_of_order' });
      await db.syncNow();
      if ((await db.status()).pending !== 0) throw new Error('the device did not sync');
    }, opts);
    const pulled = await a.evaluate(async () => {
      const next = nextRows();
      await db.syncNow();
      return (await next).find((x) => x.id === 'r1');
    });
    assert.equal(pulled?.fields.status, 'out_of_order', 'a pulled change arrives');

    const summary = await a.evaluate(() => {
      stop();
      const repeats = got.filter((rows, i) => i > 0 && JSON.stringify(rows) === JSON.stringify(got[i - 1])).length;
      return { repeats, n: got.length };
    });
    assert.equal(summary.repeats, 0, 'never the same rows twice in a row');
    const bad = await a.evaluate(() => { try { db.live({ collection: 'rooms', limit: 0 }, () => {}); return null; } catch (e) { return e.code; } });
    assert.equal(bad, 'BAD_ARGUMENT');
  } finally {
    await browser.close();
  }
});
