// The Node addon against better-sqlite3, one pass, in one process:
//   1. durable local write: the addon's create() on an encrypted (SQLCipher,
//      host key) store (entity + outbox + audit in one transaction, WAL,
//      synchronous=FULL) vs better-sqlite3 on a plain file, same pragmas,
//      INSERT entity + INSERT outbox in one transaction;
//   2. flush of N queued mutations to the reference server over loopback
//      HTTP (target ≤ 1 s for 10k), by a client that has done its first
//      sync (as a terminal in service has);
//   3. first sync of M entities from the reference server (target < 5 s for
//      1M) vs a plain client: the same snapshot pages over the same HTTP,
//      written with better-sqlite3 one transaction per page.
// Usage: bash bench/node/run.sh [--entities 1000000] [--flush 10000] [--writes 2000] [--only writes|flush|first]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { TideSync } = require('../../node/index.js');
const Database = require('better-sqlite3');

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const WRITES = arg('writes', 2000);
const FLUSH = arg('flush', 10000);
const ENTITIES = arg('entities', 1000000);
// --only first|flush|writes: one part alone (for profiling).
const ONLY = (() => { const i = process.argv.indexOf('--only'); return i > 0 ? process.argv[i + 1] : null; })();
const part = (name) => !ONLY || ONLY === name;
const BIN = process.env.TIDESYNC_SERVER_BIN;
if (!BIN || !fs.existsSync(BIN)) throw new Error('TIDESYNC_SERVER_BIN: the reference server binary (bench/node/run.sh builds it)');

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidesync-bench-node-'));
const hostKey = () => new Uint8Array(32).fill(5);
const now = () => Number(process.hrtime.bigint()) / 1e6;
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const ms = (x) => `${x.toFixed(3)} ms`;
const room = (i) => ({ number: String(i), floor: i % 20, kind: 'double', status: 'dirty', rate_cents: 8900 + (i % 4) * 1000, notes: 'no feather pillows' });

function freePort() {
  return new Promise((resolve) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); }); });
}

async function startServer(db) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(BIN, ['--database', db, '--listen', `127.0.0.1:${port}`, '--rate-limit', '0'], { stdio: 'ignore' });
  process.on('exit', () => child.kill('SIGKILL'));
  for (let i = 0; i < 400; i++) {
    try { if ((await fetch(`${url}/health`)).ok) break; } catch { /* starting */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  const issue = (terminal) => execFileSync(BIN, ['--database', db, 'issue-key', '--tenant', 't1', '--branch', 'b1', '--terminal', terminal, '--quiet'], { encoding: 'utf8' }).trim();
  return { url, issue, pid: child.pid, stop: () => new Promise((r) => { child.once('exit', r); child.kill('SIGTERM'); }) };
}

const open = (file, server, terminal, apiKey, extra = {}) => TideSync.open({
  path: file, key: { hostKey: hostKey() }, serverUrl: server.url, apiKey, terminalId: terminal, branchId: 'b1', autoSync: false, ...extra,
});

// With BENCH_PAUSE_FILE set, before the timed part of a flush or a first
// sync: writes "<server pid> <bench pid>" to that file and waits until it is
// gone (to attach a profiler).
async function pauseForProfiler(server) {
  const file = process.env.BENCH_PAUSE_FILE;
  if (!file) return;
  fs.writeFileSync(file, `${server.pid} ${process.pid}`);
  while (fs.existsSync(file)) await new Promise((r) => setTimeout(r, 100));
}

async function writes() {
  const server = { url: 'http://127.0.0.1:9' }; // never contacted: autoSync off
  const addon = async (file, key) => {
    const db = await TideSync.open({ path: path.join(dir, file), key, serverUrl: server.url, apiKey: 'unused', terminalId: 'w1', branchId: 'b1', autoSync: false });
    const xs = [];
    for (let i = 0; i < WRITES + 200; i++) {
      const t = now();
      await db.create('rooms', room(i), `r${String(i).padStart(7, '0')}`);
      if (i >= 200) xs.push(now() - t);
    }
    db.close();
    return xs;
  };
  const ours = await addon('writes.db', { hostKey: hostKey() });
  // The same without encryption: what SQLCipher's page encryption costs.
  const oursPlain = await addon('writes-plain.db', { plaintext: true });

  const peer = new Database(path.join(dir, 'peer-writes.db'));
  peer.pragma('journal_mode = WAL');
  peer.pragma('synchronous = FULL');
  peer.exec(`CREATE TABLE entities (collection TEXT, id TEXT, fields TEXT, version INTEGER, PRIMARY KEY (collection, id)) WITHOUT ROWID;
             CREATE TABLE outbox (seq INTEGER PRIMARY KEY, op_id TEXT, collection TEXT, id TEXT, payload TEXT)`);
  const putEntity = peer.prepare('INSERT OR REPLACE INTO entities VALUES (?, ?, ?, 0)');
  const putOutbox = peer.prepare('INSERT INTO outbox (op_id, collection, id, payload) VALUES (?, ?, ?, ?)');
  const write = peer.transaction((id, json) => { putEntity.run('rooms', id, json); putOutbox.run(`op-${id}`, 'rooms', id, json); });
  const theirs = [];
  for (let i = 0; i < WRITES + 200; i++) {
    const t = now();
    write(`r${String(i).padStart(7, '0')}`, JSON.stringify(room(i)));
    if (i >= 200) theirs.push(now() - t);
  }
  peer.close();
  return { ours, oursPlain, theirs };
}

async function flush(server) {
  const apiKey = server.issue('flush');
  const db = await open(path.join(dir, 'flush.db'), server, 'flush', apiKey);
  // A terminal in service: it has done its first sync, then queues offline.
  await db.syncNow();
  if (!(await db.status()).first_sync_done) throw new Error('flush: the first sync did not complete');
  for (let i = 0; i < FLUSH; i++) await db.create('tasks', { room: String(i % 300), what: 'restock minibar', n: i });
  await pauseForProfiler(server);
  const t = now();
  let rounds = 0;
  while ((await db.status()).pending > 0) { await db.syncNow(); rounds++; }
  const secs = (now() - t) / 1000;
  const s = await db.status();
  db.close();
  if (s.dead_letters !== 0) throw new Error(`flush left dead letters: ${JSON.stringify(s)}`);
  return { secs, rounds };
}

async function firstSync(server) {
  const apiKey = server.issue('first');
  const db = await open(path.join(dir, 'first.db'), server, 'first', apiKey);
  const rss0 = process.memoryUsage().rss;
  const t = now();
  let s;
  for (let i = 0; i < 10000; i++) {
    await db.syncNow();
    s = await db.status();
    if (s.first_sync_done) break;
  }
  const secs = (now() - t) / 1000;
  const rss = process.memoryUsage().rss - rss0;
  if (!s.first_sync_done) throw new Error(`first sync not done: ${JSON.stringify(s)}`);
  const page = await db.query('rooms', { limit: 1 });
  db.close();
  const size = ['first.db', 'first.db-wal'].map((f) => path.join(dir, f)).filter(fs.existsSync).reduce((a, f) => a + fs.statSync(f).size, 0);

  // The peer: the same pages, a plain table, one transaction per page.
  const peerKey = server.issue('peer');
  const peer = new Database(path.join(dir, 'peer-first.db'));
  peer.pragma('journal_mode = WAL');
  peer.pragma('synchronous = FULL');
  peer.exec('CREATE TABLE entities (collection TEXT, id TEXT, fields TEXT, version INTEGER, PRIMARY KEY (collection, id)) WITHOUT ROWID');
  const put = peer.prepare('INSERT OR REPLACE INTO entities VALUES (?, ?, ?, ?)');
  const putPage = peer.transaction((es) => { for (const e of es) put.run(e.collection, e.id, JSON.stringify(e.fields), e.version); });
  const tp = now();
  let after = null;
  let n = 0;
  for (;;) {
    const q = after ? `&after_collection=${encodeURIComponent(after.collection)}&after_id=${encodeURIComponent(after.id)}` : '';
    const r = await fetch(`${server.url}/v1/snapshot?limit=1000${q}`, { headers: { authorization: `Bearer ${peerKey}`, 'accept-encoding': 'gzip' } });
    if (!r.ok) throw new Error(`peer snapshot ${r.status}: ${await r.text()}`);
    const body = await r.json();
    putPage(body.entities);
    n += body.entities.length;
    if (!body.next) break;
    after = body.next;
  }
  const peerSecs = (now() - tp) / 1000;
  peer.close();
  if (n !== ENTITIES || page.length !== 1) throw new Error(`peer saw ${n}, expected ${ENTITIES}`);
  return { secs, peerSecs, size, rss };
}

let w = null, f = null, fs1 = null;
if (part('writes')) {
  w = await writes();
  console.error(`writes done: p50 ${ms(pct(w.ours, 0.5))} vs ${ms(pct(w.theirs, 0.5))}`);
}
if (part('flush')) {
  const server = await startServer(path.join(dir, 'server.db'));
  f = await flush(server);
  await server.stop();
  console.error(`flush done: ${f.secs.toFixed(2)} s`);
}
if (part('first')) {
  console.error(`seeding ${ENTITIES} entities into a server…`);
  const serverDb = path.join(dir, 'server-first.db');
  execFileSync(BIN, ['--database', serverDb, 'seed-synthetic', '--tenant', 't1', '--branch', 'b1', '--collection', 'rooms', '--count', String(ENTITIES)], { stdio: ['ignore', 'ignore', 'inherit'] });
  const server2 = await startServer(serverDb);
  await pauseForProfiler(server2);
  fs1 = await firstSync(server2);
  await server2.stop();
}
fs.rmSync(dir, { recursive: true, force: true });

console.log(`tidesync Node addon vs better-sqlite3 ${require('better-sqlite3/package.json').version}, Node ${process.version}, ${os.cpus().length} cores`);
if (w) {
  const p50 = pct(w.ours, 0.5), p99 = pct(w.ours, 0.99), q50 = pct(w.theirs, 0.5), q99 = pct(w.theirs, 0.99);
  console.log(`durable write (${WRITES}): addon encrypted p50 ${ms(p50)} p99 ${ms(p99)} | better-sqlite3 plain put+outbox p50 ${ms(q50)} p99 ${ms(q99)} | p50 ratio ${(p50 / q50).toFixed(2)}x (target ≤ 1.00x)`);
  console.log(`  (addon without encryption: p50 ${ms(pct(w.oursPlain, 0.5))} p99 ${ms(pct(w.oursPlain, 0.99))})`);
}
if (f) console.log(`flush ${FLUSH} queued mutations: ${f.secs.toFixed(2)} s in ${f.rounds} syncNow rounds (${Math.round(FLUSH / f.secs)}/s; target ≤ 1 s)`);
if (fs1) console.log(`first sync ${ENTITIES}: addon ${fs1.secs.toFixed(2)} s (${Math.round(ENTITIES / fs1.secs)}/s, target < 5 s) | plain fetch + better-sqlite3 ${fs1.peerSecs.toFixed(2)} s | ratio ${(fs1.secs / fs1.peerSecs).toFixed(2)}x | store ${(fs1.size / 1e6).toFixed(0)} MB, RSS +${(fs1.rss / 1e6).toFixed(0)} MB`);
