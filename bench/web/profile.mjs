// Where the time of a first sync goes: `node bench/web/profile.mjs` (after
// scripts/build-pkg.sh). Runs the snapshot benchmark of bench.mjs once in a
// fresh headless Chromium under the DevTools CPU profiler and prints the
// self time by function (top 30) and by kind (Wasm, IndexedDB/fetch
// callbacks, JS, idle), with the main thread's long tasks.
// Env: BENCH_SNAPSHOT (100000).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startStaticServer } from '../../www/server.mjs';
import { startMockServer } from '../../www/e2e/sync-server.mjs';
import { report } from './cpuprofile.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const N = Number(process.env.BENCH_SNAPSHOT ?? 100000);
const ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-sync'];

const sync = await startMockServer({ seed: N });
const web = await startStaticServer({ root: ROOT, upstream: sync.url });
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tidesync-prof-'));
const ctx = await chromium.launchPersistentContext(profile, { executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium', args: ARGS, headless: true });
try {
  const page = await ctx.newPage();
  await page.goto(`${web.url}/bench/web/index.html`);
  await page.waitForFunction(() => window.ready === true, null, { timeout: 60000 });
  await page.evaluate(() => {
    window.__long = [];
    new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); }).observe({ type: 'longtask', buffered: false });
  });
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
  await cdp.send('Profiler.start');
  const res = await page.evaluate((a) => window.runFirstSync(a.n, a.server), { n: N, server: { apiKey: sync.apiKey, branch: sync.branch } });
  const { profile: prof } = await cdp.send('Profiler.stop');
  const long = await page.evaluate(() => window.__long);
  console.log(`open + first sync of ${N}: ${res.ms.toFixed(0)} ms (${res.perSec.toFixed(0)}/s); JS heap after ${res.heapMB?.toFixed(1)} MB, Wasm memory ${res.wasmMB.toFixed(1)} MB`);
  console.log(`long tasks on the page's thread: ${long.length}, longest ${Math.max(0, ...long).toFixed(0)} ms`);
  report(prof);
} finally {
  await ctx.close();
  fs.rmSync(profile, { recursive: true, force: true });
  await web.close();
  await sync.close();
}
