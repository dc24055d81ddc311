// In-page benchmarks (one Chromium run): tidesync (Wasm, encrypted
// IndexedDB) beside Dexie and WebCrypto on the same machine.
import init, { TideSync, __benchSealOpen } from '/pkg/tidesync.js';
import Dexie, { liveQuery } from '/node_modules/dexie/dist/dexie.mjs';

const wasm = await init();

const now = () => performance.now();
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(p * s.length))]; };
const summary = (xs) => ({ median: pct(xs, 0.5), p95: pct(xs, 0.95), p99: pct(xs, 0.99), mean: xs.reduce((a, b) => a + b, 0) / xs.length });
const uid = () => Math.random().toString(36).slice(2);

function fields(i) {
  return { status: i % 3 ? 'clean' : 'dirty', floor: i % 40, guest: `Guest ${i}`, note: 'late checkout' };
}

const LIVE_REPS = 100;

/** A live query's update after a local write to a row it shows: from the
 *  write's call to the callback with the new rows (a page of 50 rows of the
 *  store's `rooms`). */
async function tidesyncLive(db) {
  let resolve = null;
  let rows = null;
  const stop = db.live({ collection: 'rooms', limit: 50 }, (r) => { rows = r; if (resolve) resolve(); });
  while (!rows) await new Promise((r) => setTimeout(r, 10));
  const times = [];
  for (let i = -5; i < LIVE_REPS; i++) { // 5 writes to warm up, not counted
    const id = rows[(i + 5) % rows.length].id;
    const seen = new Promise((r) => { resolve = r; });
    const t = now();
    const write = db.patch('rooms', id, { note: `live ${i}` });
    await seen;
    if (i >= 0) times.push(now() - t);
    await write;
    if (rows.find((x) => x.id === id).fields.note !== `live ${i}`) throw new Error('the live rows missed the write');
  }
  stop();
  return summary(times);
}

/** The same with Dexie's liveQuery over its plain store. */
async function dexieLive(db) {
  let resolve = null;
  let rows = null;
  const sub = liveQuery(() => db.entities.where('[collection+id]').between(['rooms', Dexie.minKey], ['rooms', Dexie.maxKey]).limit(50).toArray())
    .subscribe({ next: (r) => { rows = r; if (resolve) resolve(); } });
  while (!rows) await new Promise((r) => setTimeout(r, 10));
  const times = [];
  for (let i = -5; i < LIVE_REPS; i++) {
    const rec = rows[(i + 5) % rows.length];
    const seen = new Promise((r) => { resolve = r; });
    const t = now();
    const write = db.entities.put({ ...rec, fields: { ...rec.fields, note: `live ${i}` } });
    await seen;
    if (i >= 0) times.push(now() - t);
    await write;
  }
  sub.unsubscribe();
  return summary(times);
}

/** Encrypted durable local write through the engine: entity + outbox (+ audit) in one strict transaction. */
async function tidesyncWrites(n) {
  const db = await TideSync.open({ dbName: `bench-w-${uid()}`, key: { hostKey: new Uint8Array(32).fill(9) },
    serverUrl: 'http://127.0.0.1:9', apiKey: 'x', terminalId: 't', branchId: 'b', autoSync: false });
  for (let i = 0; i < 20; i++) await db.create('rooms', fields(i), `warm${i}`);
  const times = [];
  for (let i = 0; i < n; i++) {
    const t = now();
    await db.create('rooms', fields(i), `r${i}`);
    times.push(now() - t);
  }
  await db.wipe();
  return summary(times);
}

/** Dexie (plain): entity put + outbox (wal) add in one strict transaction. */
async function dexieWrites(n) {
  const db = new Dexie(`bench-dexie-w-${uid()}`, { chromeTransactionDurability: 'strict' });
  db.version(1).stores({ entities: '[collection+id]', wal: '++seq' });
  await db.open();
  const write = (i, id) => db.transaction('rw', db.entities, db.wal, async () => {
    const rec = { collection: 'rooms', id, fields: fields(i), version: 0, pending: 1 };
    await db.entities.put(rec);
    await db.wal.add({ op_id: uid(), kind: 'create', collection: 'rooms', entity_id: id, payload: rec.fields });
  });
  for (let i = 0; i < 20; i++) await write(i, `warm${i}`);
  const times = [];
  for (let i = 0; i < n; i++) {
    const t = now();
    await write(i, `r${i}`);
    times.push(now() - t);
  }
  db.close();
  await Dexie.delete(db.name);
  return summary(times);
}

/** Snapshot apply: open + first sync of `n` entities from the server, sealed into IndexedDB. */
async function tidesyncSnapshot(n, server) {
  const t = now();
  const opts = { dbName: `bench-s-${uid()}`, key: { hostKey: new Uint8Array(32).fill(9) },
    serverUrl: '', apiKey: server.apiKey, terminalId: 't', branchId: server.branch, autoSync: false };
  let db = await TideSync.open(opts);
  const report = await db.syncNow();
  const ms = now() - t;
  // query() pages (at most 10,000 a page): count every page.
  let count = 0;
  for (let after; ;) {
    const page = await db.query('rooms', { after, limit: 10000 });
    count += page.length;
    if (page.length < 10000) break;
    after = page[page.length - 1].id;
  }
  if (count !== n) throw new Error(`snapshot stored ${count} of ${n} (report ${JSON.stringify(report)})`);
  // The origin's usage as the browser estimates it (this store is the only
  // one left at this point), then a reopen: the integrity mark is checked
  // against every record.
  const usage = (await navigator.storage.estimate()).usage;
  db.close();
  const r = now();
  db = await TideSync.open(opts);
  const reopenMs = now() - r;
  const live = await tidesyncLive(db);
  await db.wipe();
  return { ms, perSec: n / (ms / 1000), reopenMs, usageMB: usage / 1e6, live };
}

/** Dexie bulkPut of the same records, plain text, already in memory. */
async function dexieBulkPut(n) {
  const db = new Dexie(`bench-dexie-s-${uid()}`, { chromeTransactionDurability: 'strict' });
  db.version(1).stores({ entities: '[collection+id]' });
  await db.open();
  const recs = Array.from({ length: n }, (_, i) => ({ collection: 'rooms', id: `r${String(i).padStart(7, '0')}`, version: 1, deleted: false, fields: fields(i) }));
  const t = now();
  await db.entities.bulkPut(recs);
  const ms = now() - t;
  // The same estimate as for tidesync's store (the only database left now).
  const usage = (await navigator.storage.estimate()).usage;
  const live = await dexieLive(db);
  db.close();
  await Dexie.delete(db.name);
  return { ms, perSec: n / (ms / 1000), usageMB: usage / 1e6, live };
}

/** AES-256-GCM seal + open per second: Wasm (aes-gcm crate) vs WebCrypto. */
async function cipher(size) {
  let iters = size >= 65536 ? 200 : 5000;
  __benchSealOpen(size, 50); // warm
  let t = now();
  __benchSealOpen(size, iters);
  const wasmPerSec = iters / ((now() - t) / 1000);

  const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, false, ['encrypt', 'decrypt']);
  const msg = new Uint8Array(size).fill(0x5a);
  const aad = new Uint8Array(16).fill(7);
  const once = async () => {
    const iv = crypto.getRandomValues(new Uint8Array(12));
    const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData: aad }, key, msg);
    await crypto.subtle.decrypt({ name: 'AES-GCM', iv, additionalData: aad }, key, ct);
  };
  for (let i = 0; i < 50; i++) await once();
  iters = size >= 65536 ? 200 : 2000;
  t = now();
  for (let i = 0; i < iters; i++) await once();
  const webCryptoPerSec = iters / ((now() - t) / 1000);
  return { size, wasmPerSec, webCryptoPerSec, ratio: wasmPerSec / webCryptoPerSec };
}

/** Opening a store keyed by a passphrase: PBKDF2-SHA256 with 600,000 iterations, in Wasm. */
async function passphraseOpen() {
  const name = `bench-p-${uid()}`;
  const opts = { dbName: name, key: { passphrase: 'correct horse battery staple' }, serverUrl: 'http://127.0.0.1:9',
    apiKey: 'x', terminalId: 't', branchId: 'b', autoSync: false };
  const first = await TideSync.open(opts);
  first.close();
  const t = now();
  const db = await TideSync.open(opts);
  const ms = now() - t;
  await db.wipe();
  return { ms };
}

window.runBench = async ({ writes, snapshot, server }) => {
  const out = {};
  out.passphraseOpen = await passphraseOpen();
  out.writeTidesync = await tidesyncWrites(writes);
  out.writeDexie = await dexieWrites(writes);
  out.snapshotTidesync = await tidesyncSnapshot(snapshot, server);
  out.snapshotDexie = await dexieBulkPut(snapshot);
  out.cipher = [];
  for (const size of [64, 1024, 65536]) out.cipher.push(await cipher(size));
  return out;
};
// A flush (bench/web/flush.mjs): `n` local writes queued (autoSync off),
// then syncNow() until every mutation is acknowledged; the time of that
// part. `onStart` (optional) is awaited just before it (a profiler).
window.runFlush = async (n, server, onStart) => {
  const db = await TideSync.open({ dbName: `bench-f-${uid()}`, key: { hostKey: new Uint8Array(32).fill(9) },
    serverUrl: server.url, apiKey: server.apiKey, terminalId: server.terminal, branchId: server.branch, autoSync: false });
  await db.syncNow();
  for (let i = 0; i < n; i++) await db.create('tasks', { room: String(i % 300), what: 'restock minibar', n: i });
  const queued = (await db.status()).pending;
  if (onStart) await onStart();
  const t = now();
  let rounds = 0;
  while ((await db.status()).pending > 0 && rounds < 1000) { await db.syncNow(); rounds++; }
  const ms = now() - t;
  const s = await db.status();
  await db.wipe();
  return { ms, queued, rounds, pending: s.pending, deadLetters: s.dead_letters };
};

// One part alone, for bench/web/profile.mjs.
window.runFirstSync = async (n, server) => {
  const t = now();
  const db = await TideSync.open({ dbName: `bench-p-${uid()}`, key: { hostKey: new Uint8Array(32).fill(9) },
    serverUrl: '', apiKey: server.apiKey, terminalId: 't', branchId: server.branch, autoSync: false });
  await db.syncNow();
  const ms = now() - t;
  const mem = { wasmMB: wasm.memory.buffer.byteLength / 1e6,
    heapMB: performance.memory ? performance.memory.usedJSHeapSize / 1e6 : null };
  db.close();
  return { ms, perSec: n / (ms / 1000), ...mem };
};
window.ready = true;
