// The offline queue survives a process restart; after reconnecting every
// mutation is applied exactly once; kill -9 in the middle of a flush loses
// nothing and doubles nothing. Real processes, real SQLCipher files, the
// reference server over loopback HTTP. A key of another terminal is refused
// at open (the server says whose it is), at the first open the server
// answers when it was away.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import { TideSync, referenceServer, deadUrl, options, syncUntilIdle, serverView, runWorker, tempDir } from './support.mjs';

const ROOMS = 300;

function workerOptions(file, url, terminal, apiKey, extra = {}) {
  const o = options(file, url, terminal, apiKey, extra);
  return JSON.stringify({ ...o, key: { hostKey: Array.from(o.key.hostKey) } });
}

/** Each room created and patched twice, once each: version 3, step 2, state clean. */
function assertExactlyOnce(view, n) {
  assert.equal(view.size, n, 'every room reached the server');
  for (const [id, e] of view) {
    assert.equal(e.server_version, 3, `${id}: three mutations, each applied once`);
    assert.equal(e.fields.step, 2, `${id}: the last patch won`);
    assert.equal(e.fields.state, 'clean');
  }
}

test('an offline queue survives a process restart, then syncs exactly once', async () => {
  const dir = tempDir('restart');
  const server = await referenceServer(dir);
  try {
    const apiKey = server.issue('desk-1');
    const file = path.join(dir, 'desk.db');
    // Process 1: the server is unreachable; it writes and exits.
    const w = await runWorker(['write', workerOptions(file, await deadUrl(), 'desk-1', apiKey, { autoSync: true }), String(ROOMS)]);
    assert.equal(w.code, 0);
    assert.deepEqual(w.lines, [`written ${ROOMS * 3}`]);

    // Process 2 (this one): the queue is still there, in order, per room.
    const db = await TideSync.open(options(file, server, 'desk-1', apiKey));
    const outbox = await db.outbox();
    assert.equal(outbox.length, ROOMS * 3);
    assert.ok(outbox.every((e) => e.state.state === 'pending' && e.mutation.offline !== undefined));
    const first = outbox.filter((e) => e.mutation.entity_id === 'room-0000').map((e) => e.mutation.kind);
    assert.deepEqual(first, ['create', 'patch', 'patch']);
    assert.equal((await db.status()).pending, ROOMS * 3);
    assert.equal((await db.get('rooms', 'room-0042')).fields.step, 2);

    const s = await syncUntilIdle(db);
    assert.equal(s.dead_letters, 0);
    assert.equal(s.conflicts, 0);
    db.close();
    assertExactlyOnce(await serverView(server, dir, 'rooms'), ROOMS);
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('kill -9 in the middle of a flush loses nothing and doubles nothing', async () => {
  const dir = tempDir('kill');
  const server = await referenceServer(dir);
  try {
    const apiKey = server.issue('desk-2');
    const file = path.join(dir, 'desk.db');
    const total = ROOMS * 3;
    const w = await runWorker(['write', workerOptions(file, await deadUrl(), 'desk-2', apiKey), String(ROOMS)]);
    assert.equal(w.code, 0);

    // The flusher syncs in the background; it is killed with SIGKILL as
    // soon as part of the queue is acknowledged.
    let killedAt = null;
    const f = await runWorker(['flush', workerOptions(file, server.url, 'desk-2', apiKey, { autoSync: true, pullIntervalMs: 100 })], (line, child) => {
      const m = /^pending (\d+)$/.exec(line);
      if (m && killedAt === null && Number(m[1]) < total) {
        killedAt = Number(m[1]);
        child.kill('SIGKILL');
      }
    });
    assert.equal(f.signal, 'SIGKILL', 'the flusher was killed');
    assert.ok(killedAt !== null && killedAt < total);

    const db = await TideSync.open(options(file, server, 'desk-2', apiKey));
    const left = (await db.status()).pending;
    assert.ok(left > 0 && left < total, `killed mid-flush: ${left} of ${total} still queued`);
    const s = await syncUntilIdle(db);
    assert.equal(s.dead_letters, 0);
    assert.equal(s.conflicts, 0);
    const audit = await db.audit({ limit: 10000 });
    const applied = audit.filter((a) => a.event.event === 'applied' || a.event.event === 'duplicate');
    assert.ok(applied.length > 0);
    db.close();
    assertExactlyOnce(await serverView(server, dir, 'rooms'), ROOMS);
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a server that is down then back: the queue drains on its own once it answers', async () => {
  const dir = tempDir('reconnect');
  const server = await referenceServer(dir);
  try {
    const apiKey = server.issue('desk-3');
    await server.stop();
    // SYNC_UNREACHABLE pauses sync for retry.offlineProbeMs (15 s by default).
    const db = await TideSync.open(options(path.join(dir, 'desk.db'), server, 'desk-3', apiKey, { autoSync: true, pullIntervalMs: 200, retry: { offlineProbeMs: 2000 } }));
    for (let i = 0; i < 20; i++) await db.create('rooms', { floor: 1, state: 'dirty', step: 0 }, `room-${String(i).padStart(4, '0')}`);
    for (let i = 0; i < 20; i++) {
      const id = `room-${String(i).padStart(4, '0')}`;
      await db.patch('rooms', id, { state: 'in-progress', step: 1 });
      await db.patch('rooms', id, { state: 'clean', step: 2 });
    }
    // Not offline: the host has a network, the server is not there (a
    // refused connection is tried once more after 300 ms: poll).
    let away;
    for (const end = Date.now() + 10000; ;) {
      away = await db.status();
      if (away.phase !== 'syncing' && away.last_error) break;
      assert.ok(Date.now() < end, JSON.stringify(away));
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(away.pending, 60);
    assert.equal(away.phase, 'error');
    assert.equal(away.last_error[0], 'SYNC_UNREACHABLE');
    await server.start();
    const end = Date.now() + 30000;
    while ((await db.status()).pending > 0) {
      assert.ok(Date.now() < end, `not drained: ${JSON.stringify(await db.status())}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    db.close();
    assertExactlyOnce(await serverView(server, dir, 'rooms'), 20);
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a key issued for another terminal is TERMINAL_MISMATCH at open, also one kept while the server was away; the queue is kept for the right key', async () => {
  const dir = tempDir('terminal');
  const server = await referenceServer(dir);
  try {
    const apiKey = server.issue('desk-4');
    const file = path.join(dir, 'desk.db');
    // The server answers GET /v1/whoami: refused at open, nothing created.
    await assert.rejects(TideSync.open(options(file, server, 'desk-5', apiKey)), (e) => {
      assert.equal(e.code, 'TERMINAL_MISMATCH');
      assert.match(e.message, /API key belongs to terminal "desk-4" of branch "b1", not terminal "desk-5"/);
      return true;
    });
    // The key alone pairs a new store as its own terminal, and the store keeps it.
    const paired = await TideSync.open({ ...options(path.join(dir, 'paired.db'), server, undefined, apiKey), terminalId: undefined, branchId: undefined });
    assert.deepEqual(paired.identity(), { terminal_id: 'desk-4', branch_id: 'b1', key_stored: true });
    paired.close();
    const again = await TideSync.open({ ...options(path.join(dir, 'paired.db'), await deadUrl(), undefined, undefined), terminalId: undefined, branchId: undefined });
    assert.deepEqual(again.identity(), { terminal_id: 'desk-4', branch_id: 'b1', key_stored: true }, 'offline, with nothing given');
    again.close();
    // A one-time pairing code: redeemed once for a key the store keeps; it syncs with it.
    const code = server.pairingCode('desk-6');
    const coded = await TideSync.open({ ...options(path.join(dir, 'coded.db'), server, undefined, undefined), terminalId: undefined, branchId: undefined, pairingCode: code });
    assert.deepEqual(coded.identity(), { terminal_id: 'desk-6', branch_id: 'b1', key_stored: true });
    await coded.create('rooms', { floor: 2, state: 'dirty', step: 0 }, 'room-by-code');
    await syncUntilIdle(coded);
    coded.close();
    assert.equal((await serverView(server, dir, 'rooms')).get('room-by-code')?.fields.state, 'dirty', 'synced with the redeemed key');
    await assert.rejects(TideSync.open({ ...options(path.join(dir, 'coded-twice.db'), server, undefined, undefined), terminalId: undefined, branchId: undefined, pairingCode: code }),
      (e) => e.code === 'SYNC_UNAUTHORIZED' && /pairing/.test(e.message), 'a code works once');

    // With the server away at open the key cannot be checked: the store
    // opens as desk-5 and keeps it, unchecked. Once the server answers, the
    // next open asks again and refuses it; the queue is kept, and the right
    // key flushes it.
    const away = await TideSync.open(options(file, await deadUrl(), 'desk-5', apiKey));
    await away.create('rooms', { floor: 1, state: 'dirty', step: 0 }, 'room-0001');
    away.close();
    await assert.rejects(TideSync.open({ ...options(file, server, 'desk-5', undefined) }),
      (e) => e.code === 'TERMINAL_MISMATCH' && /desk-4/.test(e.message), 'the kept key is checked once the server answers');
    assert.equal((await serverView(server, dir, 'rooms')).has('room-0001'), false, 'nothing applied under the wrong key');
    const db = await TideSync.open({ ...options(file, server, 'desk-5', server.issue('desk-5')) });
    assert.equal((await db.outbox()).length, 1, 'the queue was kept');
    assert.equal((await db.deadLetters()).length, 0);
    await syncUntilIdle(db);
    db.close();
    assert.equal((await serverView(server, dir, 'rooms')).get('room-0001')?.fields.state, 'dirty', 'applied with the right key');
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
