// The live channel end to end (issue 17, item 6; J-20: the front desk sees
// a tablet's change at once): two headless Chromium pages, each its own
// terminal and IndexedDB, on one branch of the reference server, with a
// 60 s poll so that only the server's pokes (GET /v1/events) can bring a
// change in time. Each page writes in turn; every change must be visible on
// the other page in under 1 s, from the writer's create() call to the
// reader's `changed` event. Prints the median and p95 of 20 changes.
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
const CHANGES = Number(process.env.TIDESYNC_LIVE_CHANGES ?? 20);

const bin = findServerBinary();
const skip = bin ? false : 'no tidesync-server binary (this test needs the reference server)';
let web, browser, dir, server;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

before(async () => {
  if (skip) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidesync-live-e2e-'));
  web = await startStaticServer({ root: ROOT });
  const db = path.join(dir, 'live.db');
  execFileSync(bin, ['--database', db, 'migrate'], { stdio: 'ignore' });
  const port = await freePort();
  const child = spawn(bin, ['--database', db, 'serve', '--listen', `127.0.0.1:${port}`, '--rate-limit', '0',
    '--cors-origin', web.url], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, TIDESYNC_LOG: 'warn' } });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 200; i++) {
    try { if ((await fetch(`${url}/health`)).ok) break; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  server = {
    url,
    issueKey: (terminal) => execFileSync(bin, ['--database', db, 'issue-key', '--tenant', TENANT, '--branch', BRANCH,
      '--terminal', terminal, '--quiet'], { encoding: 'utf8' }).trim(),
    close: () => child.kill('SIGTERM'),
  };
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
});

after(async () => {
  await browser?.close();
  await web?.close();
  server?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** A page with its own context (its own IndexedDB) open as `terminal`. */
async function terminalPage(terminal) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) console.log(`# ${terminal}: ${m.text()}`); });
  await page.goto(`${web.url}/www/e2e/app.html`);
  await page.waitForFunction(() => window.ready === true);
  await page.evaluate(async (o) => {
    window.arrivals = {};
    window.db = await TideSync.open(o);
    window.db.subscribe({ collection: 'rooms' }, (e) => {
      // One changed room comes as `changed`; several in one pulled page as `changes`.
      const ids = e.type === 'changed' ? [e.key.id] : e.type === 'changes' ? e.ids : [];
      for (const id of ids) if (!(id in window.arrivals)) window.arrivals[id] = Date.now();
    });
  }, { dbName: `live-${terminal}`, key: { webCrypto: true }, serverUrl: server.url, apiKey: server.issueKey(terminal),
    terminalId: terminal, branchId: BRANCH, pullIntervalMs: 60_000 });
  // Synced once (the first snapshot), so every later change is a poke's.
  const end = Date.now() + 15_000;
  while (Date.now() < end) {
    const s = await page.evaluate(() => window.db.status());
    if (s.first_sync_done && s.phase === 'idle') return { ctx, page };
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`${terminal} did not finish its first sync`);
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

test('two browsers on one branch each see the other\'s change in under 1 s (live channel, 60 s poll)', { skip }, async () => {
  const a = await terminalPage('front-desk');
  const b = await terminalPage('tablet-1');
  try {
    // Let both live channels open (the scheduler opens them after the first sync).
    await new Promise((r) => setTimeout(r, 500));
    const latencies = [];
    for (let n = 0; n < CHANGES; n++) {
      const [writer, reader] = n % 2 === 0 ? [b, a] : [a, b];
      const id = `room-${n}`;
      const wroteAt = await writer.page.evaluate(async (id) => {
        const t = Date.now();
        await window.db.create('rooms', { status: 'clean' }, id);
        return t;
      }, id);
      const seenAt = await reader.page.waitForFunction((id) => window.arrivals[id], id, { timeout: 5_000, polling: 10 })
        .then((h) => h.jsonValue());
      const ms = seenAt - wroteAt;
      assert.ok(ms < 1000, `change ${n} took ${ms} ms to reach the other page`);
      latencies.push(ms);
      const got = await reader.page.evaluate((id) => window.db.get('rooms', id), id);
      assert.equal(got?.fields.status, 'clean');
    }
    const sorted = [...latencies].sort((x, y) => x - y);
    console.log(`# live: ${CHANGES} changes between two pages: median ${percentile(sorted, 50)} ms, ` +
      `p95 ${percentile(sorted, 95)} ms, max ${sorted[sorted.length - 1]} ms`);
  } finally {
    await a.ctx.close();
    await b.ctx.close();
  }
});
