// Starts a sync server for the end-to-end tests: the reference server
// (tidesync-server, SQLite in a temp dir) when its binary exists, otherwise a
// minimal in-process mock of the protocol that only exercises the transport
// wiring (the test says which one it used).
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn, execFileSync } from 'node:child_process';

const TENANT = 't1', BRANCH = 'b1', TERMINAL = 'web-1';

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function waitHealthy(url, ms = 20000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { if ((await fetch(`${url}/health`)).ok) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`sync server at ${url} did not become healthy`);
}

export function findServerBinary() {
  // An explicit TIDESYNC_SERVER_BIN is the only candidate when set.
  const candidates = process.env.TIDESYNC_SERVER_BIN
    ? [process.env.TIDESYNC_SERVER_BIN]
    : [path.join(process.env.CARGO_TARGET_DIR ?? path.join(os.homedir(), '.cache/tidesync-target'), 'debug/tidesync-server')];
  return candidates.find((p) => fs.existsSync(p)) ?? null;
}

/** `args`: more flags for the reference server (the mock ignores them);
 *  `branch` and `terminal`: the key's (default b1, web-1). */
export async function startSyncServer({ args = [], branch = BRANCH, terminal = TERMINAL } = {}) {
  const bin = findServerBinary();
  if (bin) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidesync-e2e-'));
    const db = path.join(dir, 'server.db');
    const key = execFileSync(bin, ['--database', db, 'issue-key', '--tenant', TENANT, '--branch', branch, '--terminal', terminal, '--quiet'], { encoding: 'utf8' }).trim();
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const child = spawn(bin, ['--database', db, '--listen', `127.0.0.1:${port}`, ...args], { stdio: ['ignore', 'inherit', 'inherit'] });
    await waitHealthy(url);
    return { kind: 'reference server', url, apiKey: key, branch, terminal,
      close: async () => { child.kill('SIGTERM'); fs.rmSync(dir, { recursive: true, force: true }); } };
  }
  return startMockServer();
}

/** A minimal in-memory implementation of the protocol (mock). */
export async function startMockServer({ seed = 0 } = {}) {
  const apiKey = 'mock-key';
  const entities = new Map(); // "c\0id" -> state
  // The live entities in key order, kept until a push changes one (so a
  // paged snapshot of a big seed is not sorted again for every page).
  let sorted = null;
  const ledger = new Map();   // op_id -> {version, cursor}
  let cursor = 0;
  const log = [];             // {cursor, key}
  // `seed` entities already on the server (benchmarks of snapshot apply).
  for (let i = 0; i < seed; i++) {
    const id = `r${String(i).padStart(7, '0')}`;
    cursor += 1;
    const k = `rooms\0${id}`;
    entities.set(k, { collection: 'rooms', id, version: 1, deleted: false, last_op: null,
      fields: { status: i % 3 ? 'clean' : 'dirty', floor: i % 40, guest: `Guest ${i}`, note: 'late checkout' },
      updated_at: { wall_ms: 1700000000000 + i, counter: 0, node: 1 } });
    log.push({ cursor, k });
  }
  const body = (req) => new Promise((r) => { let b = ''; req.on('data', (c) => b += c); req.on('end', () => r(b)); });
  const send = (res, status, obj) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(obj)); };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname === '/health') return send(res, 200, { ok: true });
    if (req.headers.authorization !== `Bearer ${apiKey}`) return send(res, 401, { code: 'SYNC_UNAUTHORIZED', message: 'bad key' });
    if (url.pathname === '/v1/mutations' && req.method === 'POST') {
      const { mutations } = JSON.parse(await body(req));
      const acks = mutations.map((m) => {
        const seen = ledger.get(m.op_id);
        if (seen) return { op_id: m.op_id, status: 'duplicate', ...seen };
        const k = `${m.collection}\0${m.entity_id}`;
        const prev = entities.get(k);
        const version = (prev?.version ?? 0) + 1;
        let fields = m.kind === 'patch' ? { ...(prev?.fields ?? {}) } : {};
        if (m.kind === 'patch') for (const [f, v] of Object.entries(m.payload ?? {})) { if (v === null) delete fields[f]; else fields[f] = v; }
        else if (m.kind !== 'delete') fields = m.payload ?? {};
        cursor += 1;
        entities.set(k, { collection: m.collection, id: m.entity_id, version, fields, deleted: m.kind === 'delete', updated_at: m.hlc, last_op: m.op_id });
        sorted = null;
        log.push({ cursor, k });
        ledger.set(m.op_id, { version, cursor });
        return { op_id: m.op_id, status: 'applied', version, cursor };
      });
      return send(res, 200, { acks });
    }
    if (url.pathname === '/v1/changes') {
      const since = Number(url.searchParams.get('since') ?? 0), limit = Number(url.searchParams.get('limit') ?? 500);
      const latest = new Map();
      for (const e of log) if (e.cursor > since) latest.set(e.k, e.cursor);
      const items = [...latest.entries()].sort((a, b) => a[1] - b[1]);
      const page = items.slice(0, limit);
      return send(res, 200, { changes: page.map(([k]) => entities.get(k)), next: page.length ? page[page.length - 1][1] : Math.max(since, cursor), has_more: items.length > limit });
    }
    if (url.pathname === '/v1/snapshot') {
      const limit = Number(url.searchParams.get('limit') ?? 500);
      const ac = url.searchParams.get('after_collection'), ai = url.searchParams.get('after_id');
      sorted ??= [...entities.values()].filter((e) => !e.deleted).sort((a, b) => a.collection < b.collection ? -1 : a.collection > b.collection ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
      const after = (e) => ac === null || e.collection > ac || (e.collection === ac && e.id > ai);
      let lo = 0, hi = sorted.length;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (after(sorted[mid])) hi = mid; else lo = mid + 1; }
      const page = sorted.slice(lo, lo + limit);
      const last = page[page.length - 1];
      return send(res, 200, { entities: page, at: cursor, next: sorted.length - lo > limit ? { collection: last.collection, id: last.id } : null });
    }
    if (url.pathname === '/v1/reconcile') { await body(req); return send(res, 200, { mismatched: [], plan: null, at: cursor }); }
    send(res, 404, { code: 'NOT_FOUND', message: url.pathname });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { kind: 'MOCK (transport wiring only)', url, apiKey, branch: BRANCH, terminal: TERMINAL,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) };
}
