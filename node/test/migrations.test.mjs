// Schema migrations of queued mutations, from JS: mutations queued offline
// at schema 1 are carried to schema 2 when the app opens the store at 2
// (renamed, removed and defaulted fields), one that cannot be carried is a
// dead letter with SCHEMA_UNSUPPORTED, and the rest reach the server in the
// new shape, once. An older app then cannot open the store.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { TideSync, referenceServer, deadUrl, options, syncUntilIdle, serverView, tempDir } from './support.mjs';

const STEP = { from: 1, collections: ['rooms'], rename: { state: 'status' }, remove: ['legacy'], defaults: { floor: 0 }, hold_if_present: ['minibar'] };

test('queued mutations are migrated when the schema version rises, then sync in the new shape', async () => {
  const dir = tempDir('migrate');
  // The server accepts the app's new schema (a release raises it first).
  const server = await referenceServer(dir, ['--max-schema-version', '2']);
  try {
    const apiKey = server.issue('desk-1');
    const file = path.join(dir, 'desk.db');
    const v1 = await TideSync.open(options(file, await deadUrl(), 'desk-1', apiKey));
    await v1.create('rooms', { state: 'dirty', legacy: 1 }, 'r1');
    await v1.patch('rooms', 'r1', { state: 'clean' });
    await v1.create('rooms', { state: 'dirty' }, 'r2');
    await v1.patch('rooms', 'r2', { minibar: 2 });
    await v1.create('tasks', { state: 'open' }, 't1'); // another collection: untouched
    v1.close();

    const v2 = await TideSync.open(options(file, server, 'desk-1', apiKey, { schemaVersion: 2, migrations: [STEP] }));
    const outbox = await v2.outbox();
    const payloads = outbox.map((e) => [e.mutation.entity_id, e.mutation.kind, e.mutation.payload, e.state.state]);
    assert.deepEqual(payloads, [
      ['r1', 'create', { status: 'dirty', floor: 0 }, 'pending'],
      ['r1', 'patch', { status: 'clean' }, 'pending'],
      ['r2', 'create', { status: 'dirty', floor: 0 }, 'pending'],
      ['r2', 'patch', { minibar: 2 }, 'dead_letter'],
      ['t1', 'create', { state: 'open' }, 'pending'],
    ]);
    const held = await v2.deadLetters();
    assert.equal(held.length, 1);
    assert.equal(held[0].state.code, 'SCHEMA_UNSUPPORTED');
    assert.ok(outbox.filter((e) => e.state.state === 'pending').every((e) => e.mutation.schema_version === 2));

    await syncUntilIdle(v2);
    const rooms = await serverView(server, dir, 'rooms');
    assert.deepEqual(rooms.get('r1').fields, { status: 'clean', floor: 0 });
    assert.equal(rooms.get('r1').server_version, 2, 'each mutation applied once');
    assert.deepEqual(rooms.get('r2').fields, { status: 'dirty', floor: 0 });
    assert.deepEqual((await serverView(server, dir, 'tasks')).get('t1').fields, { state: 'open' });
    assert.equal((await v2.deadLetters()).length, 1, 'the held mutation waits for a person');
    await v2.discard(held[0].seq);
    v2.close();

    // Opening again at 2 runs nothing twice; an app still at 1 is refused.
    const again = await TideSync.open(options(file, server, 'desk-1', apiKey, { schemaVersion: 2, migrations: [STEP] }));
    assert.equal((await again.outbox()).length, 0);
    again.close();
    await assert.rejects(TideSync.open(options(file, server, 'desk-1', apiKey)), (e) => e.code === 'SCHEMA_UNSUPPORTED');
  } finally {
    await server.stop();
  }
});

test('malformed schema options are BAD_ARGUMENT and open nothing', async () => {
  const dir = tempDir('migrate-bad');
  const file = path.join(dir, 'desk.db');
  const url = await deadUrl();
  for (const [extra, fragment] of [
    [{ schemaVersion: 0 }, 'schemaVersion'],
    [{ schemaVersion: 2, migrations: [{ from: 2 }] }, 'migrations[0].from'],
    [{ schemaVersion: 3, migrations: [{ from: 1 }, { from: 1 }] }, 'migrations[1].from'],
    [{ schemaVersion: 2, migrations: [{ from: 1, renam: {} }] }, 'renam'],
  ]) {
    await assert.rejects(TideSync.open(options(file, url, 'desk-1', 'k', extra)),
      (e) => e.code === 'BAD_ARGUMENT' && e.message.includes(fragment), JSON.stringify(extra));
  }
  await assert.rejects(TideSync.open(options(file, url, 'desk-1', 'k', { maxAttempts: 0 })), (e) => e.code === 'BAD_ARGUMENT' && e.message.includes('maxAttempts'));
  assert.equal(fs.existsSync(file), false, 'a refused open created no store');
});
