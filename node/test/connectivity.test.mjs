// Online or offline, honestly (as in the browser package): a request that
// reaches no server while the host has a network (a refused connection on
// 127.0.0.1, a name that does not resolve) is an error with its reason,
// SYNC_UNREACHABLE, and the outbox is kept; SYNC_OFFLINE only when the host
// has no network, here a process in a network namespace of its own with no
// interface up (`unshare --net`, as root; skipped where that is not
// allowed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { TideSync, HERE, referenceServer, deadUrl, options, syncUntilIdle, tempDir } from './support.mjs';

test('a refused connection on 127.0.0.1 is SYNC_UNREACHABLE with the reason, not offline; the queue is kept', async () => {
  const dir = tempDir('unreachable');
  try {
    const url = await deadUrl();
    const db = await TideSync.open(options(path.join(dir, 'desk.db'), url, 'desk-u1', 'ts_0000000000000000_k'));
    await db.create('rooms', { state: 'dirty' }, 'r-1');
    const report = await db.syncNow();
    assert.equal(report.error, 'SYNC_UNREACHABLE', JSON.stringify(report));
    const s = await db.status();
    assert.equal(s.phase, 'error', JSON.stringify(s));
    assert.equal(s.last_error[0], 'SYNC_UNREACHABLE');
    assert.match(s.last_error[1], /^the server refused the connection: /);
    assert.ok(s.last_error[1].includes(url), 'the message names the server');
    assert.ok(!s.last_error[1].includes('ts_0000000000000000_k'), 'and never the key');
    assert.equal(s.pending, 1);
    assert.equal(s.dead_letters, 0);
    assert.equal((await db.outbox())[0].attempts, 0, 'no attempt counted');
    db.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('SYNC_UNREACHABLE pauses the background sync, then it drains once the server answers', async () => {
  const dir = tempDir('unreachable-back');
  const server = await referenceServer(dir);
  try {
    const apiKey = server.issue('desk-u2');
    await server.stop();
    const db = await TideSync.open(options(path.join(dir, 'desk.db'), server, 'desk-u2', apiKey,
      { autoSync: true, pullIntervalMs: 200, retry: { offlineProbeMs: 1000 } }));
    await db.create('rooms', { state: 'dirty' }, 'r-1');
    const end = Date.now() + 10000;
    let s;
    while (!(s = await db.status()).last_error) {
      assert.ok(Date.now() < end, JSON.stringify(s));
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(s.last_error[0], 'SYNC_UNREACHABLE');
    await server.start();
    // syncNow() after SYNC_UNREACHABLE tries again at once.
    const after = await syncUntilIdle(db);
    assert.equal(after.last_error, null);
    db.close();
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const unshare = spawnSync('unshare', ['--net', 'true']).status === 0;

test('with no network at all (no interface up), a server elsewhere is SYNC_OFFLINE', { skip: !unshare && 'unshare --net is not allowed here' }, async () => {
  const dir = tempDir('offline');
  try {
    for (const url of ['http://192.0.2.1:8080', 'http://sync.example.invalid']) {
      const file = path.join(dir, `${new URL(url).hostname}.db`);
      const o = JSON.stringify({ ...options(file, url, 'desk-o1', 'ts_0000000000000000_k'), key: { plaintext: true } });
      const w = spawnSync('unshare', ['--net', process.execPath, path.join(HERE, 'worker.mjs'), 'status', o], { encoding: 'utf8' });
      assert.equal(w.status, 0, w.stderr);
      const s = JSON.parse(w.stdout.trim().split('\n').pop());
      assert.equal(s.phase, 'offline', `${url}: ${JSON.stringify(s)}`);
      assert.equal(s.last_error, null, 'offline is not an error');
      assert.equal(s.pending, 1);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
