// The `credentials` callback, as in the browser package: asked before a
// request when no key is held and again after a 401 (once per request), a
// key rotated at the server picked up without reopening, a store that
// knows its terminal opened without any key (SYNC_UNAUTHORIZED until one
// is given), a callback that throws, rejects or gives something else. The
// real server over loopback; keys issued and revoked with its CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import { TideSync, referenceServer, options, syncUntilIdle, serverView, tempDir } from './support.mjs';

/** The status once `pred` holds, polled (fails after `ms`). */
async function statusWhen(db, pred, what, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    const s = await db.status();
    if (pred(s)) return s;
    assert.ok(Date.now() < end, `${what}: ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The error of the last exchange, after a syncNow(). */
async function errorAfterSync(db) {
  await db.syncNow();
  const s = await db.status();
  assert.equal(s.phase, 'error', JSON.stringify(s));
  return s.last_error;
}

function noKeyIn(value, ...keys) {
  const text = JSON.stringify(value);
  for (const k of keys) assert.ok(!text.includes(k), 'no key in the status or its messages');
}

test('a key rotated at the server is picked up without reopening: apiKey first, the callback after the 401', async () => {
  const dir = tempDir('cred-rotate');
  const server = await referenceServer(dir);
  try {
    const key1 = server.issue('desk-c1');
    let current = key1;
    let asked = 0;
    const db = await TideSync.open({
      ...options(path.join(dir, 'desk.db'), server, 'desk-c1', key1),
      credentials: async () => { asked++; return current; },
    });
    await db.create('rooms', { state: 'dirty' }, 'r-1');
    await syncUntilIdle(db);
    assert.equal(asked, 0, 'apiKey is used first: the callback is not asked while it works');

    // The server revokes the key and issues another; the app's callback
    // now gives the new one.
    const key2 = server.issue('desk-c1');
    server.revoke(key1);
    current = key2;
    await db.create('rooms', { state: 'clean' }, 'r-2');
    const s = await syncUntilIdle(db);
    assert.equal(s.last_error, null);
    assert.equal(s.dead_letters, 0);
    assert.equal(asked, 1, 'asked once, after the first 401; that request was retried with the new key');
    const before = asked;
    await db.patch('rooms', 'r-2', { state: 'inspected' });
    await syncUntilIdle(db);
    assert.equal(asked, before, 'the new key is kept: not asked again while it works');
    noKeyIn(await db.status(), key1, key2);
    db.close();
    const view = await serverView(server, dir, 'rooms');
    assert.equal(view.get('r-1')?.fields.state, 'dirty');
    assert.equal(view.get('r-2')?.fields.state, 'inspected', 'written with the rotated key, no reopen');

    // Only the callback: asked before the first request, once.
    let asked2 = 0;
    const only = await TideSync.open({
      ...options(path.join(dir, 'only.db'), server, 'desk-c1', undefined),
      credentials: () => { asked2++; return key2; },
    });
    await only.create('rooms', { state: 'dirty' }, 'r-3');
    await syncUntilIdle(only);
    assert.equal(asked2, 1, 'asked when no key was held, then the key is kept');
    assert.equal(only.identity().key_stored, false, 'a callback key is not kept in the store');
    only.close();
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a 401 the callback cannot mend stands; syncNow() after a new key resumes at once', async () => {
  const dir = tempDir('cred-401');
  const server = await referenceServer(dir);
  try {
    const revoked = server.issue('desk-c2');
    server.revoke(revoked);
    let current = revoked;
    let asked = 0;
    const db = await TideSync.open({
      ...options(path.join(dir, 'desk.db'), server, 'desk-c2', revoked),
      credentials: () => { asked++; return current; },
    });
    await db.create('rooms', { state: 'dirty' }, 'r-1');
    const [code, message] = await errorAfterSync(db);
    assert.equal(code, 'SYNC_UNAUTHORIZED');
    assert.doesNotMatch(message, /options\.credentials/, 'the server\'s 401, not the callback\'s');
    assert.ok(asked >= 1, 'asked after the 401');
    const s = await db.status();
    assert.equal(s.pending, 1);
    assert.equal(s.dead_letters, 0, 'a refused key dead-letters nothing');
    assert.equal((await db.outbox())[0].attempts, 0, 'and counts no attempt');

    // A new key: syncNow() asks again and resumes at once (no waiting out
    // the pause after an auth error).
    current = server.issue('desk-c2');
    const t0 = Date.now();
    await db.syncNow();
    const after = await db.status();
    assert.equal(after.pending, 0, JSON.stringify(after));
    assert.equal(after.last_error, null);
    assert.ok(Date.now() - t0 < 5000, 'at once');
    noKeyIn(after, revoked, current);
    db.close();
    assert.equal((await serverView(server, dir, 'rooms')).get('r-1')?.fields.state, 'dirty');
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('no key at all: a store that knows its terminal opens and works, SYNC_UNAUTHORIZED until a key is given', async () => {
  const dir = tempDir('cred-none');
  const server = await referenceServer(dir);
  try {
    // Neither apiKey nor credentials: opens (the ids are given), writes.
    const bare = await TideSync.open(options(path.join(dir, 'bare.db'), server, 'desk-c3', undefined));
    await bare.create('rooms', { state: 'dirty' }, 'r-bare');
    const [code, message] = await errorAfterSync(bare);
    assert.equal(code, 'SYNC_UNAUTHORIZED');
    assert.match(message, /no credentials: open\(\) was given neither apiKey nor credentials/);
    assert.equal((await bare.status()).pending, 1, 'the write is kept');
    bare.close();
    // Opened again with a key: the queue syncs.
    const key = server.issue('desk-c3');
    const keyed = await TideSync.open(options(path.join(dir, 'bare.db'), server, 'desk-c3', key));
    await syncUntilIdle(keyed);
    keyed.close();
    assert.equal((await serverView(server, dir, 'rooms')).get('r-bare')?.fields.state, 'dirty');

    // A callback with no key yet (nobody signed in), then one.
    let current = null;
    const late = await TideSync.open({
      ...options(path.join(dir, 'late.db'), server, 'desk-c4', undefined),
      credentials: () => current,
      autoSync: true, pullIntervalMs: 200,
    });
    await late.create('rooms', { state: 'inspected' }, 'r-late');
    const waiting = await statusWhen(late, (s) => s.last_error !== null && s.phase !== 'syncing', 'no key yet');
    assert.equal(waiting.last_error[0], 'SYNC_UNAUTHORIZED');
    assert.match(waiting.last_error[1], /no credentials yet: options\.credentials\(\) gave no API key/);
    assert.equal(waiting.pending, 1);
    current = server.issue('desk-c4');
    await late.syncNow();
    const done = await statusWhen(late, (s) => s.pending === 0 && s.last_error === null, 'synced once the key is given');
    assert.equal(done.dead_letters, 0);
    late.close();
    assert.equal((await serverView(server, dir, 'rooms')).get('r-late')?.fields.state, 'inspected');

    // A credentials callback does not pair: no ids, no key is NOT_PAIRED.
    await assert.rejects(
      TideSync.open({ ...options(path.join(dir, 'unpaired.db'), server, undefined, undefined), terminalId: undefined, branchId: undefined, credentials: () => current }),
      (e) => e.code === 'NOT_PAIRED',
    );
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a callback that throws, rejects or gives a non-string is SYNC_UNAUTHORIZED with the reason; a fixed one resumes', async () => {
  const dir = tempDir('cred-throw');
  const server = await referenceServer(dir);
  try {
    let behave;
    const open = () => TideSync.open({
      ...options(path.join(dir, 'desk.db'), server, 'desk-c5', undefined),
      credentials: () => behave(),
    });
    const cases = [
      [() => { throw new Error('the vault is locked'); }, 'threw: the vault is locked'],
      [async () => { throw new Error('no token'); }, 'rejected: no token'],
      [() => Promise.reject('plain string'), 'rejected: plain string'],
      [() => 42, 'must give a string (the API key), null or undefined'],
    ];
    for (const [callback, what] of cases) {
      behave = callback;
      const db = await open();
      if ((await db.status()).pending === 0) await db.create('rooms', { state: 'dirty' }, 'r-1');
      const [code, message] = await errorAfterSync(db);
      assert.equal(code, 'SYNC_UNAUTHORIZED');
      assert.equal(message, `unauthorized (SYNC_UNAUTHORIZED): options.credentials() ${what}`);
      db.close();
    }

    behave = () => { throw new Error('still locked'); };
    const db2 = await open();
    await errorAfterSync(db2);
    // Mended: the next syncNow() asks again and resumes at once.
    const key = server.issue('desk-c5');
    behave = () => key;
    await db2.syncNow();
    const s = await db2.status();
    assert.equal(s.pending, 0, JSON.stringify(s));
    assert.equal(s.last_error, null);
    db2.close();

    // Not a function: BAD_ARGUMENT, nothing opened.
    await assert.rejects(
      TideSync.open({ ...options(path.join(dir, 'bad.db'), server, 'desk-c6', undefined), credentials: 'ts_key' }),
      (e) => e.code === 'BAD_ARGUMENT' && /options\.credentials must be a function/.test(e.message),
    );
    assert.equal(fs.existsSync(path.join(dir, 'bad.db')), false);
  } finally {
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
