// Browser flush benchmark: `node bench/web/flush.mjs` (after
// scripts/build-pkg.sh; TIDESYNC_SERVER_BIN names the reference server
// binary, default the speed-built one of bench/node/run.sh). N mutations are
// queued in an encrypted IndexedDB store in headless Chromium (on-disk
// profile), then pushed to the reference server (embedded SQLite) over
// loopback until all are acknowledged. Env: BENCH_FLUSH (10000), BENCH_REPS
// (1), BENCH_PROFILE=1 (the CPU profile of the page during the flush).
import fs from 'node:fs';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { chromium } from 'playwright-core';
import { startStaticServer } from '../../www/server.mjs';
import { report } from './cpuprofile.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const N = Number(process.env.BENCH_FLUSH ?? 10000);
const REPS = Number(process.env.BENCH_REPS ?? 1);
const TARGET = process.env.CARGO_TARGET_DIR ?? path.join(os.homedir(), '.cache/tidesync-target');
const BIN = process.env.TIDESYNC_SERVER_BIN ?? path.join(TARGET, 'server/tidesync-server');
if (!fs.existsSync(BIN)) throw new Error(`${BIN}: build the reference server (bench/node/run.sh, or set TIDESYNC_SERVER_BIN)`);
const ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-sync'];

const freePort = () => new Promise((resolve) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); }); });
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidesync-flush-'));
const dbFile = path.join(dir, 'server.db');
const port = await freePort();
const upstream = `http://127.0.0.1:${port}`;
const child = spawn(BIN, ['--database', dbFile, '--listen', `127.0.0.1:${port}`, '--rate-limit', '0'], { stdio: 'ignore' });
process.on('exit', () => child.kill('SIGKILL'));
for (let i = 0; i < 400; i++) {
  try { if ((await fetch(`${upstream}/health`)).ok) break; } catch { /* starting */ }
  await new Promise((r) => setTimeout(r, 50));
}
const web = await startStaticServer({ root: ROOT, upstream });
const runs = [];
try {
  for (let r = 0; r < REPS; r++) {
    const terminal = `flush-${r}`;
    const apiKey = execFileSync(BIN, ['--database', dbFile, 'issue-key', '--tenant', 't1', '--branch', 'b1', '--terminal', terminal, '--quiet'], { encoding: 'utf8' }).trim();
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'tidesync-bench-'));
    const ctx = await chromium.launchPersistentContext(profile, { executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium', args: ARGS, headless: true });
    try {
      const page = await ctx.newPage();
      await page.goto(`${web.url}/bench/web/index.html`);
      await page.waitForFunction(() => window.ready === true, null, { timeout: 60000 });
      let cdp = null;
      if (process.env.BENCH_PROFILE === '1') {
        cdp = await ctx.newCDPSession(page);
        await cdp.send('Profiler.enable');
        await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
        await page.exposeFunction('__flushStarts', () => cdp.send('Profiler.start'));
      }
      const res = await page.evaluate((a) => window.runFlush(a.n, a.server, a.hook && (() => window.__flushStarts())), { n: N, server: { url: '', apiKey, terminal, branch: 'b1' }, hook: !!cdp });
      if (cdp) report((await cdp.send('Profiler.stop')).profile);
      if (res.pending !== 0 || res.deadLetters !== 0 || res.queued !== N) throw new Error(`flush incomplete: ${JSON.stringify(res)}`);
      runs.push(res);
      console.error(`run ${r + 1}/${REPS}: ${res.ms.toFixed(0)} ms in ${res.rounds} syncNow calls`);
    } finally {
      await ctx.close();
      fs.rmSync(profile, { recursive: true, force: true });
    }
  }
} finally {
  await web.close();
  child.kill('SIGTERM');
}
const med = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const ms = runs.map((r) => r.ms);
console.log(`\nflush of ${N} queued mutations (encrypted IndexedDB, Chromium) to the reference server over loopback, all acknowledged: median ${med(ms).toFixed(0)} ms (${Math.min(...ms).toFixed(0)}–${Math.max(...ms).toFixed(0)}), ${runs.length} run(s); target <= 1000 ms`);
fs.rmSync(dir, { recursive: true, force: true });
