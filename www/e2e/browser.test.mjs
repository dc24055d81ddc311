// End-to-end tests in headless Chromium (playwright-core, Debian's chromium):
// a page imports pkg/, writes offline, survives a reload and a browser
// restart, then syncs exactly once against the sync server; two tabs share
// one database with one leader.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startStaticServer } from '../server.mjs';
import { startSyncServer } from './sync-server.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-sync'];

let sync, web;
before(async () => {
  sync = await startSyncServer();
  web = await startStaticServer({ root: ROOT, upstream: sync.url });
  console.log(`# sync server: ${sync.kind} at ${sync.url}; pages at ${web.url}`);
});
after(async () => { await web?.close(); await sync?.close(); });

const control = (what) => fetch(`${web.url}/__control/${what}`, { method: 'POST' });

async function openPage(ctx) {
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error') console.log(`# page: ${m.text()}`); });
  await page.goto(`${web.url}/www/e2e/app.html`);
  await page.waitForFunction(() => window.ready === true);
  return page;
}

function options(dbName, extra = {}) {
  return { dbName, key: { webCrypto: true }, serverUrl: '', apiKey: sync.apiKey,
    terminalId: sync.terminal, branchId: sync.branch, pullIntervalMs: 300,
    policies: { sales: 'append-only', rooms: 'merge-three-way' }, ...extra };
}

async function serverSnapshot() {
  const r = await fetch(`${sync.url}/v1/snapshot?limit=1000`, {
    headers: { authorization: `Bearer ${sync.apiKey}`, 'x-tidesync-branch': sync.branch },
  });
  assert.equal(r.status, 200);
  return (await r.json()).entities;
}

test('offline writes survive a reload and a browser restart, then sync exactly once', async () => {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tidesync-profile-'));
  const launch = () => chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: ARGS, headless: true });
  await control('offline?on=1');
  let ctx = await launch();
  try {
    let page = await openPage(ctx);
    const opts = options('e2e-offline');
    const opIds = await page.evaluate(async (opts) => {
      const db = await TideSync.open(opts);
      await db.create('rooms', { status: 'dirty', floor: 12 }, 'r-1204');
      await db.create('rooms', { status: 'dirty', floor: 3 }, 'r-301');
      await db.patch('rooms', 'r-1204', { status: 'clean' });
      await db.append('sales', { total: 42.5 }, 's-1');
      const ids = (await db.outbox()).map((e) => e.mutation.op_id);
      db.close();
      return ids;
    }, opts);
    assert.equal(opIds.length, 4, 'four mutations queued offline');

    await page.reload();
    await page.waitForFunction(() => window.ready === true);
    const afterReload = await page.evaluate(async (opts) => {
      const db = await TideSync.open(opts);
      const r = { outbox: (await db.outbox()).map((e) => e.mutation.op_id), room: await db.get('rooms', 'r-1204'), status: await db.status() };
      db.close();
      return r;
    }, opts);
    assert.deepEqual(afterReload.outbox, opIds, 'the outbox survives a reload, in order');
    assert.equal(afterReload.room.fields.status, 'clean');
    assert.equal(afterReload.room.pending, 2);

    // A browser restart (the profile is on disk).
    await ctx.close();
    ctx = await launch();
    page = await openPage(ctx);

    // Back online; the first push reaches the server but its answer is lost,
    // so the engine must resend the same op ids.
    await control('offline?on=0');
    await control('drop-push-response');
    const synced = await page.evaluate(async (opts) => {
      const db = await TideSync.open(opts);
      const queued = (await db.outbox()).length;
      const deadline = Date.now() + 30000;
      while (Date.now() < deadline && (await db.outbox()).length > 0) {
        await new Promise((r) => setTimeout(r, 100));
      }
      await db.syncNow();
      await db.syncNow();
      const r = { queued, outbox: (await db.outbox()).length, room: await db.get('rooms', 'r-1204'),
        other: await db.get('rooms', 'r-301'), status: await db.status() };
      db.close();
      return r;
    }, opts);
    assert.equal(synced.queued, 4, 'the outbox survives a browser restart');
    assert.equal(synced.outbox, 0, 'everything acknowledged');
    assert.equal(synced.room.server_version, 2);
    assert.equal(synced.room.pending, 0);
    assert.equal(synced.status.pending, 0);
    assert.ok(web.stats.pushes >= 2, `the lost push was resent (${web.stats.pushes} pushes)`);

    const byKey = new Map((await serverSnapshot()).map((e) => [`${e.collection}/${e.id}`, e]));
    assert.equal(byKey.get('rooms/r-1204').version, 2, 'create + patch applied once each');
    assert.equal(byKey.get('rooms/r-1204').fields.status, 'clean');
    assert.equal(byKey.get('rooms/r-301').version, 1, 'applied exactly once despite the resend');
    assert.equal(byKey.get('sales/s-1').version, 1);
    assert.equal(byKey.get('rooms/r-1204').last_op, opIds[2]);
  } finally {
    await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
});

test('two tabs share one database: one leads, the other sees its changes and takes over', async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  try {
    const ctx = await browser.newContext();
    const a = await openPage(ctx);
    const b = await openPage(ctx);
    const opts = options('e2e-tabs', { key: undefined });
    const open = (page) => page.evaluate(async (opts) => {
      window.db = await TideSync.open({ ...opts, key: { hostKey: new Uint8Array(32).fill(7) } });
      window.db.subscribe({ collection: 'desk' }, (e) => { if (e.type === 'changed') window.events.push(e.key.id); });
      return window.db.isLeader();
    }, opts);
    assert.equal(await open(a), true, 'the first tab leads');
    assert.equal(await open(b), false, 'the second tab follows');

    // A write in the follower runs in the leader; both tabs hear of it.
    const created = await b.evaluate(() => window.db.create('desk', { status: 'dirty' }, 'r-7'));
    assert.equal(created.id, 'r-7');
    await a.waitForFunction(() => window.events.includes('r-7'));
    await b.waitForFunction(() => window.events.includes('r-7'));
    await a.evaluate(() => window.db.patch('desk', 'r-7', { status: 'clean' }));
    const seen = await b.evaluate(() => window.db.get('desk', 'r-7'));
    assert.equal(seen.fields.status, 'clean');

    // The browser's offline and online events reach the leader's engine.
    await ctx.setOffline(true);
    await a.waitForFunction(async () => (await window.db.status()).phase === 'offline', null, { timeout: 10000 });
    await ctx.setOffline(false);
    await a.waitForFunction(async () => (await window.db.status()).phase !== 'offline', null, { timeout: 10000 });

    // The leader goes away: the follower takes the lead and keeps working.
    await a.close();
    await b.waitForFunction(() => window.db.isLeader(), null, { timeout: 10000 });
    const after = await b.evaluate(async () => {
      await window.db.create('desk', { status: 'dirty' }, 'r-8');
      return (await window.db.query('desk')).map((r) => r.id);
    });
    assert.deepEqual(after, ['r-7', 'r-8']);
  } finally {
    await browser.close();
  }
});

test('errors reach JS with a stable code', async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  try {
    const page = await openPage(await browser.newContext());
    const codes = await page.evaluate(async (opts) => {
      const out = {};
      const db = await TideSync.open({ ...opts, key: { hostKey: new Uint8Array(32).fill(1) } });
      try { await db.patch('rooms', 'nope', { a: 1 }); } catch (e) { out.patchMissing = e.code; }
      try { await db.create('rooms', 'not an object'); } catch (e) { out.badFields = e.code; }
      // Values JSON cannot hold are refused, naming the field; nothing is written.
      await db.create('rooms', { status: 'dirty' }, 'j1');
      const cyclic = { a: 1 }; cyclic.self = cyclic;
      out.notJson = {};
      for (const [name, value] of Object.entries({
        date: { at: new Date() }, undef: { at: undefined }, nan: { n: NaN }, inf: { n: [1, Infinity] },
        fn: { f: () => 1 }, map: { m: new Map() }, cycle: cyclic, big: { b: 10n },
      })) {
        try { await db.patch('rooms', 'j1', value); out.notJson[name] = 'accepted'; }
        catch (e) { out.notJson[name] = `${e.code} ${e.message}`; }
      }
      for (const id of ['p1', 'p2', 'p3', 'p4', 'p5']) await db.create('pages', { n: id }, id);
      const pages = [];
      let after;
      for (;;) {
        const page = await db.query('pages', { after, limit: 2 });
        if (page.length === 0) break;
        pages.push(page.map((e) => e.id));
        after = page[page.length - 1].id;
      }
      out.pages = pages;
      try { await db.query('pages', { limit: 0 }); } catch (e) { out.badLimit = e.code; }
      try { await db.query('pages', { limit: 100000 }); } catch (e) { out.hugeLimit = e.code; }
      const j1 = await db.get('rooms', 'j1');
      out.j1 = j1 && j1.fields;
      out.j1Patches = (await db.outbox()).filter((e) => e.mutation.entity_id === 'j1' && e.mutation.kind === 'patch').length;
      db.close();
      try { await TideSync.open({ ...opts, key: { hostKey: new Uint8Array(32).fill(2) } }); } catch (e) { out.wrongKey = e.code; }
      try { await TideSync.open({ ...opts, key: { plaintext: true } }); } catch (e) { out.noKey = e.code; }
      const again = await TideSync.open({ ...opts, key: { hostKey: new Uint8Array(32).fill(1) } });
      await again.wipe();
      const fresh = await TideSync.open({ ...opts, key: { plaintext: true } });
      out.afterWipe = (await fresh.query('rooms')).length;
      fresh.close();

      // The database vanishes underneath an open TideSync (another tab
      // deletes it, the browser evicts it): a clear error and an error status.
      const goneName = `${opts.dbName}-gone`;
      const g = await TideSync.open({ ...opts, dbName: goneName, key: { plaintext: true } });
      await g.create('rooms', { a: 1 }, 'x');
      await new Promise((resolve, reject) => {
        const r = indexedDB.deleteDatabase(goneName);
        r.onsuccess = resolve; r.onerror = reject;
      });
      try { await g.create('rooms', { a: 2 }, 'y'); } catch (e) { out.gone = e.code; }
      const st = await g.status();
      out.goneStatus = st.last_error && st.last_error[0];
      g.close();
      return out;
    }, options('e2e-errors'));
    assert.equal(codes.badFields, 'BAD_ARGUMENT');
    assert.deepEqual(codes.pages, [['p1', 'p2'], ['p3', 'p4'], ['p5']], 'query pages by id');
    assert.equal(codes.badLimit, 'BAD_ARGUMENT');
    assert.equal(codes.hugeLimit, 'BAD_ARGUMENT');
    for (const [name, got] of Object.entries(codes.notJson)) {
      assert.match(got, /^BAD_ARGUMENT patch\./, `${name} is refused naming the field: ${got}`);
    }
    assert.match(codes.notJson.date, /patch\.at: a Date is not JSON/);
    assert.match(codes.notJson.cycle, /patch\.self: a cycle/);
    assert.deepEqual(codes.j1, { status: 'dirty' }, 'nothing of a refused patch was written');
    assert.equal(codes.j1Patches, 0, 'no refused patch was queued');
    assert.equal(codes.wrongKey, 'STORE_WRONG_KEY');
    assert.equal(codes.noKey, 'STORE_KEY_MISMATCH');
    assert.ok(typeof codes.patchMissing === 'string' && codes.patchMissing.length > 0, `patch of a missing entity: ${codes.patchMissing}`);
    assert.equal(codes.afterWipe, 0, 'wipe destroys the data and the key');
    assert.equal(codes.gone, 'STORE_GONE');
    assert.equal(codes.goneStatus, 'STORE_GONE', 'the status shows the vanished database');
  } finally {
    await browser.close();
  }
});

test('a full disk is QUOTA_EXCEEDED, shown in the status, and drops nothing', async () => {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tidesync-quota-'));
  const ctx = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: ARGS, headless: true });
  try {
    const page = await openPage(ctx);
    const cdp = await ctx.newCDPSession(page);
    await cdp.send('Storage.overrideQuotaForOrigin', { origin: web.url, quotaSize: 2 * 1024 * 1024 });
    const r = await page.evaluate(async (opts) => {
      const db = await TideSync.open({ ...opts, key: { hostKey: new Uint8Array(32).fill(3) }, autoSync: false });
      const blob = () => { const b = new Uint8Array(12 * 1024); crypto.getRandomValues(b); return btoa(String.fromCharCode(...b)); };
      let ok = 0, code = null;
      for (let i = 0; i < 600 && !code; i++) {
        try { await db.create('scans', { page: blob() }, `p${i}`); ok++; } catch (e) { code = e.code; }
      }
      const out = { ok, code, outbox: (await db.outbox()).length, status: await db.status() };
      db.close();
      return out;
    }, options('e2e-quota'));
    assert.equal(r.code, 'QUOTA_EXCEEDED', `after ${r.ok} writes`);
    assert.ok(r.ok > 0);
    assert.equal(r.outbox, r.ok, 'every accepted write is still queued; the refused one left nothing');
    assert.equal(r.status.last_error?.[0], 'QUOTA_EXCEEDED', 'the status shows it');
  } finally {
    await ctx.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
});

test('onStatus delivers the current status at once; waitForFirstSync resolves after the first snapshot', async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  try {
    const page = await openPage(await browser.newContext());
    const got = await page.evaluate(async (opts) => {
      const db = await TideSync.open(opts);
      const first = await new Promise((resolve) => {
        const off = db.onStatus((s) => { off(); resolve(s); });
      });
      const synced = await db.waitForFirstSync();
      const again = await db.waitForFirstSync(); // at once now
      db.close();
      let closed;
      try { await db.waitForFirstSync(); } catch (e) { closed = e.code; }
      return { first, synced, again, closed };
    }, options('e2e-first-sync'));
    assert.equal(typeof got.first.phase, 'string', 'a status arrived without any change');
    assert.equal(typeof got.first.first_sync_done, 'boolean');
    assert.equal(got.synced.first_sync_done, true);
    assert.equal(got.again.first_sync_done, true);
    assert.equal(got.closed, 'INVALID_STATE');
  } finally {
    await browser.close();
  }
});

test('queued mutations are migrated when the schema version rises (the same options as the Node package)', async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  try {
    const page = await openPage(await browser.newContext());
    const step = { from: 1, collections: ['rooms'], rename: { state: 'status' }, remove: ['legacy'], defaults: { floor: 0 }, hold_if_present: ['minibar'] };
    const got = await page.evaluate(async ({ opts, step }) => {
      const v1 = await TideSync.open({ ...opts, autoSync: false });
      await v1.create('rooms', { state: 'dirty', legacy: 1 }, 'mig-1');
      await v1.patch('rooms', 'mig-1', { minibar: 2 });
      v1.close();
      const v2 = await TideSync.open({ ...opts, autoSync: false, schemaVersion: 2, migrations: [step] });
      const outbox = (await v2.outbox()).map((e) => [e.mutation.kind, e.mutation.payload, e.state.state, e.state.code ?? null]);
      v2.close();
      const out = { outbox };
      try { await TideSync.open({ ...opts, autoSync: false }); } catch (e) { out.older = e.code; }
      try { await TideSync.open({ ...opts, schemaVersion: 2, migrations: [{ from: 0 }] }); } catch (e) { out.bad = e.code; }
      return out;
    }, { opts: options('e2e-migrate'), step });
    assert.deepEqual(got.outbox, [
      ['create', { status: 'dirty', floor: 0 }, 'pending', null],
      ['patch', { minibar: 2 }, 'dead_letter', 'SCHEMA_UNSUPPORTED'],
    ]);
    assert.equal(got.older, 'SCHEMA_UNSUPPORTED', 'an older app cannot open a newer store');
    assert.equal(got.bad, 'BAD_ARGUMENT');
  } finally {
    await browser.close();
  }
});
