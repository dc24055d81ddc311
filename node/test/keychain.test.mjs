// The host key from the OS keychain: Secret Service (gnome-keyring in the
// D-Bus session scripts/test-node.sh starts). The key is created with the
// store, kept only by the keychain, the same on every open; a store whose
// key the keychain lost is refused, never rekeyed; without a keychain the
// open fails clearly and creates nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { TideSync, deadUrl, options, tempDir } from './support.mjs';


test('a D-Bus session with a Secret Service is here (scripts/test-node.sh starts one)', () => {
  assert.ok(process.env.DBUS_SESSION_BUS_ADDRESS, 'run under scripts/test-node.sh: no D-Bus session');
});

test('the keychain keeps the host key: created with the store, the same on every open', async () => {
  const dir = tempDir('keychain');
  const file = path.join(dir, 'desk.db');
  const account = `desk-${process.pid}-${Date.now()}`;
  const key = { keychain: { service: 'tidesync-test', account } };
  const db = await TideSync.open({ ...options(file, await deadUrl(), 'desk-1', 'k'), key });
  await db.create('rooms', { status: 'dirty' }, 'r1');
  db.close();
  // The store is encrypted: no key, or another key, does not open it.
  await assert.rejects(TideSync.open({ ...options(file, await deadUrl(), 'desk-1', 'k'), key: { hostKey: new Uint8Array(32) } }), (e) => e.code === 'STORE_WRONG_KEY');
  const again = await TideSync.open({ ...options(file, await deadUrl(), 'desk-1', 'k'), key });
  assert.equal((await again.get('rooms', 'r1')).fields.status, 'dirty');
  again.close();

  // Another account has no key for this store: refused, nothing rekeyed.
  const before = fs.readFileSync(`${file}.key`);
  await assert.rejects(TideSync.open({ ...options(file, await deadUrl(), 'desk-1', 'k'), key: { keychain: { service: 'tidesync-test', account: `${account}-other` } } }),
    (e) => e.code === 'STORE_WRONG_KEY' && /no key/.test(e.message), 'a lost keychain entry');
  assert.deepEqual(fs.readFileSync(`${file}.key`), before, 'the envelope is untouched');
});

test('the default names: service "tidesync", account the store path', async () => {
  const dir = tempDir('keychain-default');
  const file = path.join(dir, 'desk.db');
  const db = await TideSync.open({ ...options(file, await deadUrl(), 'desk-1', 'k'), key: { keychain: true } });
  db.close();
  const again = await TideSync.open({ ...options(file, await deadUrl(), 'desk-1', 'k'), key: { keychain: { service: 'tidesync', account: path.resolve(file) } } });
  again.close();
  await assert.rejects(TideSync.open({ ...options(file, await deadUrl(), 'desk-1', 'k'), key: { keychain: { service: '' } } }), (e) => e.code === 'BAD_ARGUMENT');
});

test('without a keychain, open fails with a clear error and creates nothing', () => {
  const dir = tempDir('keychain-none');
  const file = path.join(dir, 'desk.db');
  const script = `
    const { TideSync } = require(${JSON.stringify(path.resolve('node/index.js'))});
    TideSync.open({ path: ${JSON.stringify(file)}, key: { keychain: true }, serverUrl: 'http://127.0.0.1:9', apiKey: 'k', terminalId: 't', branchId: 'b', autoSync: false })
      .then(() => { console.log('opened'); process.exit(1); }, (e) => { console.log(JSON.stringify({ code: e.code, message: e.message })); process.exit(0); });`;
  const env = { ...process.env, DBUS_SESSION_BUS_ADDRESS: 'unix:path=/nonexistent/bus' };
  const r = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8', timeout: 60000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  const e = JSON.parse(r.stdout.trim().split('\n').pop());
  assert.equal(e.code, 'STORE_WRONG_KEY');
  assert.match(e.message, /keychain/);
  assert.equal(fs.existsSync(file), false, 'no store without its key');
  assert.equal(fs.existsSync(`${file}.key`), false);
});
