// Browser benchmarks, one command: `node bench/web/run.mjs` (after
// scripts/build-pkg.sh). Each repetition launches a fresh headless Chromium
// (on-disk profile, so strict durability is real) and runs every benchmark
// in one page; prints medians and min–max of the ratios.
// Env: BENCH_REPS (3), BENCH_WRITES (300), BENCH_SNAPSHOT (100000).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startStaticServer } from '../../www/server.mjs';
import { startMockServer } from '../../www/e2e/sync-server.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const REPS = Number(process.env.BENCH_REPS ?? 3);
const WRITES = Number(process.env.BENCH_WRITES ?? 300);
const SNAPSHOT = Number(process.env.BENCH_SNAPSHOT ?? 100000);
const ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-sync'];

// The snapshot comes over loopback from an in-process server speaking the
// protocol (its cost is part of the figure, as a real first sync's would be).
const sync = await startMockServer({ seed: SNAPSHOT });
const web = await startStaticServer({ root: ROOT, upstream: sync.url });
const runs = [];
try {
  for (let r = 0; r < REPS; r++) {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tidesync-bench-'));
    const ctx = await chromium.launchPersistentContext(profile, { executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium', args: ARGS, headless: true });
    try {
      const page = await ctx.newPage();
      page.on('console', (m) => { if (m.type() === 'error') console.error(`page: ${m.text()}`); });
      await page.goto(`${web.url}/bench/web/index.html`);
      await page.waitForFunction(() => window.ready === true, null, { timeout: 60000 });
      const res = await page.evaluate((a) => window.runBench(a), { writes: WRITES, snapshot: SNAPSHOT, server: { apiKey: sync.apiKey, branch: sync.branch } });
      runs.push(res);
      console.error(`run ${r + 1}/${REPS} done`);
    } finally {
      await ctx.close();
      fs.rmSync(profile, { recursive: true, force: true });
    }
  }
} finally {
  await web.close();
  await sync.close();
}

const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const fmt = (xs, d = 2) => `${med(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;
const col = (f) => runs.map(f);
console.log(`\ntidesync browser benchmarks: ${REPS} runs, fresh Chromium each; median (min–max)`);
console.log(`\nDurable local write, ${WRITES} sequential (entity + outbox, one strict transaction):`);
console.log(`  tidesync encrypted, via the engine: median ${fmt(col((r) => r.writeTidesync.median))} ms, p99 ${fmt(col((r) => r.writeTidesync.p99))} ms`);
console.log(`  Dexie plain put + wal add:          median ${fmt(col((r) => r.writeDexie.median))} ms, p99 ${fmt(col((r) => r.writeDexie.p99))} ms`);
console.log(`  ratio tidesync/Dexie (median latency, < 1 is faster): ${fmt(col((r) => r.writeTidesync.median / r.writeDexie.median))}`);
console.log(`\nSnapshot apply, ${SNAPSHOT} entities:`);
console.log(`  tidesync encrypted (open + first sync over loopback): ${fmt(col((r) => r.snapshotTidesync.perSec), 0)} entities/s`);
console.log(`  Dexie bulkPut, plain, from memory:                    ${fmt(col((r) => r.snapshotDexie.perSec), 0)} entities/s`);
console.log(`  ratio tidesync/Dexie (throughput, > 1 is faster): ${fmt(col((r) => r.snapshotTidesync.perSec / r.snapshotDexie.perSec))}`);
console.log(`  store size (navigator.storage.estimate): tidesync ${fmt(col((r) => r.snapshotTidesync.usageMB), 1)} MB, Dexie ${fmt(col((r) => r.snapshotDexie.usageMB), 1)} MB`);
console.log(`  tidesync reopen of that store (key unwrap + integrity check of every record): ${fmt(col((r) => r.snapshotTidesync.reopenMs), 0)} ms`);
console.log(`\nLive query (a page of 50 rows of that store): from a write to a shown row to the callback with the new rows, ${100} writes:`);
console.log(`  tidesync encrypted (db.live):  median ${fmt(col((r) => r.snapshotTidesync.live.median))} ms, p95 ${fmt(col((r) => r.snapshotTidesync.live.p95))} ms, p99 ${fmt(col((r) => r.snapshotTidesync.live.p99))} ms`);
console.log(`  Dexie plain (liveQuery):       median ${fmt(col((r) => r.snapshotDexie.live.median))} ms, p95 ${fmt(col((r) => r.snapshotDexie.live.p95))} ms, p99 ${fmt(col((r) => r.snapshotDexie.live.p99))} ms`);
console.log(`  ratio tidesync/Dexie (median latency, < 1 is faster): ${fmt(col((r) => r.snapshotTidesync.live.median / r.snapshotDexie.live.median))}`);
console.log(`\nOpen with a passphrase (PBKDF2-SHA256, 600,000 iterations, in Wasm): ${fmt(col((r) => r.passphraseOpen.ms), 0)} ms`);
console.log(`\nAES-256-GCM seal + open (ops/s), Wasm vs WebCrypto:`);
for (let i = 0; i < 3; i++) {
  const size = runs[0].cipher[i].size;
  console.log(`  ${String(size).padStart(5)} B: wasm ${fmt(col((r) => r.cipher[i].wasmPerSec), 0)}, WebCrypto ${fmt(col((r) => r.cipher[i].webCryptoPerSec), 0)}, ratio ${fmt(col((r) => r.cipher[i].ratio))}`);
}
fs.writeFileSync(path.join(ROOT, 'bench/web/last-run.json'), JSON.stringify(runs, null, 2));
