// End-to-end tests of honest connectivity in headless Chromium
// (playwright-core) against the reference server: a page on origin A syncs
// to the server on origin B when the server allows A (--cors-origin), and
// when it does not the status is an error with SYNC_UNREACHABLE, not
// "offline", while navigator.onLine is true; a credentials callback picks up
// a rotated key without reopening; a database opened offline without
// credentials takes writes and syncs once a key is given; a key issued for
// another terminal is TERMINAL_MISMATCH at open (at the first open the server
// answers, when it was away).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn, execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { startStaticServer } from '../server.mjs';
import { findServerBinary } from './sync-server.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-sync'];
const TENANT = 't1', BRANCH = 'b1';

const bin = findServerBinary();
const skip = bin ? false : 'no tidesync-server binary (these tests need the reference server and its CLI)';
let web, browser, dir;
const servers = [];

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

/** A reference server on its own SQLite file (and its own origin, by port). */
async function startServer(name, extra = []) {
  const db = path.join(dir, `${name}.db`);
  execFileSync(bin, ['--database', db, 'migrate'], { stdio: 'ignore' });
  const port = await freePort();
  const child = spawn(bin, ['--database', db, 'serve', '--listen', `127.0.0.1:${port}`, '--rate-limit', '0', ...extra],
    { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, TIDESYNC_LOG: 'warn' } });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(`${url}/health`)).ok) break; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  const s = {
    url,
    issueKey: (terminal) => execFileSync(bin, ['--database', db, 'issue-key', '--tenant', TENANT, '--branch', BRANCH,
      '--terminal', terminal, '--quiet'], { encoding: 'utf8' }).trim(),
    revokeKey: (key) => execFileSync(bin, ['--database', db, 'revoke-key', '--key-id', key.split('_')[1]], { stdio: 'ignore' }),
    rooms: async (key) => {
      const r = await fetch(`${url}/v1/snapshot?limit=1000`, { headers: { authorization: `Bearer ${key}`, 'x-tidesync-branch': BRANCH } });
      assert.equal(r.status, 200);
      return new Map((await r.json()).entities.map((e) => [e.id, e]));
    },
    close: () => child.kill('SIGTERM'),
  };
  servers.push(s);
  return s;
}

before(async () => {
  if (skip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidesync-conn-e2e-'));
  // The pages' origin (A); no proxy: every sync request is cross-origin.
  web = await startStaticServer({ root: ROOT });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
});

after(async () => {
  await browser?.close();
  await web?.close();
  for (const s of servers) s.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function openPage(ctx) {
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error' && !/CORS|Failed to load resource/.test(m.text())) console.log(`# page: ${m.text()}`); });
  await page.goto(`${web.url}/www/e2e/app.html`);
  await page.waitForFunction(() => window.ready === true);
  return page;
}

const options = (dbName, serverUrl, extra = {}) => ({ dbName, key: { webCrypto: true }, serverUrl,
  terminalId: 'web-1', branchId: BRANCH, pullIntervalMs: 300, ...extra });

async function waitStatus(page, pred, what, ms = 15000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await page.evaluate(() => window.db.status());
    if (pred(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what}: last status ${JSON.stringify(last)}`);
}

test('cross-origin: syncs when the server allows the page origin; SYNC_UNREACHABLE (not offline) when it does not', { skip }, async () => {
  const allowing = await startServer('allowing', ['--cors-origin', web.url, '--cors-origin', 'https://other.example.test']);
  const refusing = await startServer('refusing', ['--cors-origin', 'https://other.example.test']);
  const goodKey = allowing.issueKey('web-1');
  const refusedKey = refusing.issueKey('web-1');
  assert.notEqual(new URL(allowing.url).origin, new URL(web.url).origin, 'the server is on another origin');
  const ctx = await browser.newContext();
  try {
    const page = await openPage(ctx);
    await page.evaluate(async (o) => {
      window.db = await TideSync.open(o);
      await window.db.create('rooms', { status: 'dirty' }, 'r-cors');
    }, options('conn-cors-ok', allowing.url, { apiKey: goodKey }));
    const ok = await waitStatus(page, (s) => s.pending === 0 && s.phase === 'idle' && s.first_sync_done, 'synced cross-origin');
    assert.equal(ok.last_error, null);
    assert.equal((await allowing.rooms(goodKey)).get('r-cors')?.fields.status, 'dirty', 'the write reached the server');
    await page.evaluate(() => window.db.close());

    // The same page against a server that does not allow its origin.
    await page.evaluate(async (o) => {
      window.db = await TideSync.open(o);
      await window.db.create('rooms', { status: 'dirty' }, 'r-refused');
    }, options('conn-cors-refused', refusing.url, { apiKey: refusedKey }));
    const refused = await waitStatus(page, (s) => s.last_error !== null && s.phase !== 'syncing', 'an error status');
    assert.equal(await page.evaluate(() => navigator.onLine), true, 'the browser is online');
    assert.equal(refused.phase, 'error', `not offline: ${JSON.stringify(refused)}`);
    assert.equal(refused.last_error[0], 'SYNC_UNREACHABLE');
    assert.match(refused.last_error[1], /refused the cross-origin request or could not be reached/);
    assert.doesNotMatch(refused.last_error[1], /^unauthorized/);
    assert.equal(refused.pending, 1, 'the write stays queued');
    assert.equal((await page.evaluate(() => window.db.deadLetters())).length, 0, 'no dead letter');
    const report = await page.evaluate(() => window.db.syncNow());
    assert.equal(report.error, 'SYNC_UNREACHABLE', 'an explicit sync tries again and says why');
    assert.equal((await refusing.rooms(refusedKey)).has('r-refused'), false, 'nothing reached the refusing server');
    // Only the browser saying so is offline.
    await ctx.setOffline(true);
    await waitStatus(page, (s) => s.phase === 'offline', 'the offline phase');
    await ctx.setOffline(false);
    await page.evaluate(() => window.db.close());
  } finally {
    await ctx.close();
  }
});

test('credentials callback: a rotated key is picked up without reopening', { skip }, async () => {
  const srv = servers.find((s) => s) ?? await startServer('rotate', ['--cors-origin', web.url]);
  const key1 = srv.issueKey('web-2');
  const ctx = await browser.newContext();
  try {
    const page = await openPage(ctx);
    await page.evaluate(async ({ o, key1 }) => {
      window.currentKey = key1;
      window.asked = 0;
      window.db = await TideSync.open({ ...o, credentials: async () => { window.asked++; return window.currentKey; } });
      await window.db.create('rooms', { status: 'dirty' }, 'r-rot-1');
    }, { o: options('conn-rotate', srv.url, { terminalId: 'web-2' }), key1 });
    await waitStatus(page, (s) => s.pending === 0 && s.phase === 'idle', 'synced with the first key');
    const askedFirst = await page.evaluate(() => window.asked);
    assert.ok(askedFirst >= 1, 'the callback gave the first key');

    // Rotate: a second key for the terminal; the first is revoked.
    const key2 = srv.issueKey('web-2');
    srv.revokeKey(key1);
    await page.evaluate((k) => { window.currentKey = k; }, key2);
    await page.evaluate(() => window.db.create('rooms', { status: 'clean' }, 'r-rot-2'));
    const s = await waitStatus(page, (s) => s.pending === 0 && s.phase === 'idle', 'synced with the rotated key');
    assert.equal(s.last_error, null);
    assert.ok(await page.evaluate(() => window.asked) > askedFirst, 'asked again after the 401');
    const rooms = await srv.rooms(key2);
    assert.equal(rooms.get('r-rot-2')?.fields.status, 'clean', 'written with the rotated key, no reopen');
    await page.evaluate(() => window.db.close());
  } finally {
    await ctx.close();
  }
});

test('opened offline without credentials: writes, then syncs once a key is given', { skip }, async () => {
  const srv = servers[0] ?? await startServer('late', ['--cors-origin', web.url]);
  const ctx = await browser.newContext();
  try {
    const page = await openPage(ctx);
    await ctx.setOffline(true);
    // No apiKey, no credentials at all: opens and works offline.
    await page.evaluate(async (o) => {
      window.db = await TideSync.open(o);
      await window.db.create('rooms', { status: 'dirty' }, 'r-nokey');
    }, options('conn-nokey', srv.url, { terminalId: 'web-3' }));
    await waitStatus(page, (s) => s.phase === 'offline' && s.pending === 1, 'offline with the write queued');
    await ctx.setOffline(false);
    const noKey = await waitStatus(page, (s) => s.last_error !== null && s.phase !== 'syncing', 'an auth error once online');
    assert.equal(noKey.last_error[0], 'SYNC_UNAUTHORIZED');
    assert.match(noKey.last_error[1], /neither apiKey nor credentials/);
    assert.equal(noKey.pending, 1);
    await page.evaluate(() => window.db.close());

    // With a credentials callback that has no key yet (the user has not
    // signed in), then has one.
    await ctx.setOffline(true);
    await page.evaluate(async (o) => {
      window.currentKey = null;
      window.db = await TideSync.open({ ...o, credentials: () => window.currentKey });
      await window.db.create('rooms', { status: 'inspected' }, 'r-late');
    }, options('conn-late', srv.url, { terminalId: 'web-3' }));
    await waitStatus(page, (s) => s.phase === 'offline' && s.pending === 1, 'offline with the write queued');
    await ctx.setOffline(false);
    const waiting = await waitStatus(page, (s) => s.last_error !== null && s.phase !== 'syncing', 'no key yet');
    assert.equal(waiting.last_error[0], 'SYNC_UNAUTHORIZED');
    const key = srv.issueKey('web-3');
    await page.evaluate((k) => { window.currentKey = k; }, key);
    await page.evaluate(() => window.db.syncNow());
    const done = await waitStatus(page, (s) => s.pending === 0 && s.phase === 'idle', 'synced once the key is given', 10000);
    assert.equal(done.last_error, null);
    assert.equal((await srv.rooms(key)).get('r-late')?.fields.status, 'inspected');
    await page.evaluate(() => window.db.close());
  } finally {
    await ctx.close();
  }
});

test('a key issued for another terminal is TERMINAL_MISMATCH at open, also one kept while the server was away; the queue is kept for the right key', { skip }, async () => {
  const srv = servers[0] ?? await startServer('terminal', ['--cors-origin', web.url]);
  const key = srv.issueKey('web-4');
  const ctx = await browser.newContext();
  try {
    const page = await openPage(ctx);
    const refused = await page.evaluate(async (o) => {
      try { await TideSync.open(o); return null; } catch (e) { return { code: e.code, message: e.message }; }
    }, options('conn-terminal', srv.url, { terminalId: 'web-5', apiKey: key }));
    assert.equal(refused?.code, 'TERMINAL_MISMATCH', JSON.stringify(refused));
    assert.match(refused.message, /API key belongs to terminal "web-4"/);
    // The server away at open: the key cannot be checked, the store opens as
    // web-5 and keeps it. Once the server answers, the next open asks again
    // and refuses it; the queue is kept, and the right key flushes it.
    const away = `http://127.0.0.1:${await freePort()}`;
    await page.evaluate(async (o) => {
      const db = await TideSync.open(o);
      await db.create('rooms', { status: 'dirty' }, 'r-wrong-terminal');
      db.close();
    }, options('conn-terminal', away, { terminalId: 'web-5', apiKey: key, autoSync: false }));
    const again = await page.evaluate(async (o) => {
      try { await TideSync.open(o); return null; } catch (e) { return { code: e.code, message: e.message }; }
    }, options('conn-terminal', srv.url, { terminalId: 'web-5' }));
    assert.equal(again?.code, 'TERMINAL_MISMATCH', JSON.stringify(again));
    assert.equal((await srv.rooms(key)).has('r-wrong-terminal'), false, 'nothing applied');
    await page.evaluate(async (o) => { window.db = await TideSync.open(o); }, options('conn-terminal', srv.url, { terminalId: 'web-5', apiKey: srv.issueKey('web-5') }));
    assert.equal((await page.evaluate(() => window.db.deadLetters())).length, 0, 'no dead letter');
    await waitStatus(page, (s) => s.pending === 0 && s.last_error === null && s.phase === 'idle', 'the kept queue flushed with the right key');
    assert.equal((await srv.rooms(key)).get('r-wrong-terminal')?.fields.status, 'dirty', 'applied once, with the right key');
    await page.evaluate(() => window.db.close());
  } finally {
    await ctx.close();
  }
});
