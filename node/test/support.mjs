// Test support: the reference server (its real binary, on SQLite in a temp
// dir; never a mock), fresh store paths, the addon, child processes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
export const { TideSync, TideSyncError, loadModel } = require('../index.js');
export const HERE = path.dirname(new URL(import.meta.url).pathname);

export function serverBinary() {
  const bin = process.env.TIDESYNC_SERVER_BIN
    ?? path.join(process.env.CARGO_TARGET_DIR ?? path.join(os.homedir(), '.cache/tidesync-target'), 'debug/tidesync-server');
  if (!fs.existsSync(bin)) throw new Error(`the reference server ${bin} is not built (cargo build -p tidesync-server)`);
  return bin;
}

export function tempDir(name) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `tidesync-node-${name}-`));
}

export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function waitHealthy(url, ms = 20000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { if ((await fetch(`${url}/health`)).ok) return; } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server at ${url} did not become healthy`);
}

/** The reference server on a SQLite file; `start()` again after `stop()` keeps its data and port. */
export async function referenceServer(dir, extraArgs = []) {
  const bin = serverBinary();
  const db = path.join(dir, 'server.db');
  const issue = (terminal) => execFileSync(bin, ['--database', db, 'issue-key', '--tenant', 't1', '--branch', 'b1', '--terminal', terminal, '--quiet'], { encoding: 'utf8' }).trim();
  // A key is `ts_<key id>_<secret>`: revoke-key takes the id.
  const revoke = (key) => execFileSync(bin, ['--database', db, 'revoke-key', '--key-id', key.split('_')[1]], { encoding: 'utf8' });
  const pairingCode = (terminal) => execFileSync(bin, ['--database', db, 'issue-pairing-code', '--tenant', 't1', '--branch', 'b1', '--terminal', terminal, '--quiet'], { encoding: 'utf8' }).trim();
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let child = null;
  const s = {
    url, branch: 'b1', issue, revoke, pairingCode,
    async start() {
      child = spawn(bin, ['--database', db, '--listen', `127.0.0.1:${port}`, ...extraArgs], { stdio: ['ignore', 'ignore', 'inherit'] });
      await waitHealthy(url);
    },
    async stop() {
      if (!child) return;
      const c = child; child = null;
      await new Promise((r) => { c.once('exit', r); c.kill('SIGTERM'); });
    },
  };
  await s.start();
  return s;
}

/** A port nothing listens on: a server that is down. */
export async function deadUrl() {
  return `http://127.0.0.1:${await freePort()}`;
}

export function options(file, server, terminal, apiKey, extra = {}) {
  return { path: file, key: { hostKey: new Uint8Array(32).fill(7) }, serverUrl: server.url ?? server,
    apiKey, terminalId: terminal, branchId: 'b1', autoSync: false, ...extra };
}

/** Syncs until nothing is pending (or fails after `rounds`). */
export async function syncUntilIdle(db, rounds = 50) {
  for (let i = 0; i < rounds; i++) {
    await db.syncNow();
    const s = await db.status();
    if (s.pending === 0) return s;
  }
  throw new Error(`still pending after ${rounds} rounds: ${JSON.stringify(await db.status())}`);
}

/** Every live entity of `collection` on the server, read by a fresh client. */
export async function serverView(server, dir, collection) {
  const terminal = `reader-${Math.random().toString(36).slice(2, 8)}`;
  const apiKey = server.issue(terminal);
  const db = await TideSync.open({ ...options(path.join(dir, `${terminal}.db`), server, terminal, apiKey), key: { plaintext: true } });
  try {
    await db.syncNow();
    const all = [];
    let after;
    for (;;) {
      const page = await db.query(collection, { after, limit: 10000 });
      all.push(...page);
      if (page.length < 10000) break;
      after = page[page.length - 1].id;
    }
    return new Map(all.map((e) => [e.id, e]));
  } finally {
    db.close();
  }
}

/** Runs `node worker.mjs <args>`; resolves with {code, signal, lines}. `onLine` may kill it. */
export function runWorker(args, onLine = () => {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(HERE, 'worker.mjs'), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lines = [];
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i); buf = buf.slice(i + 1);
        lines.push(line);
        onLine(line, child);
      }
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal, lines }));
  });
}
