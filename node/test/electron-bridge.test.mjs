// The Electron bridge without Electron (its binary cannot be downloaded
// here): main.js, bridge.js and preload.js run under Node with stand-ins for
// exactly the Electron objects they touch (ipcMain, MessageChannelMain,
// safeStorage, app, webContents), over Node's real MessageChannel, against
// the real addon and the real server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { TideSync, referenceServer, options, tempDir } from './support.mjs';

const require = createRequire(import.meta.url);
const { serve, METHODS } = require('../electron/bridge.js');
const { connect } = require('../electron/preload.js');
const { keyFromSafeStorage, attach, openForElectron } = require('../electron/main.js');

/** Lifecycle methods the main process owns; a renderer never gets them. */
const LIFECYCLE = new Set(['constructor', 'close', 'wipe', 'setOnline', 'isLeader', 'subscribe', 'onStatus', 'live', 'setScorer']);

const until = async (check, what, ms = 5000) => {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (await check()) return; await new Promise((r) => setTimeout(r, 10)); }
  throw new Error(`timed out waiting for ${what}`);
};

/** safeStorage as Electron has it, with a reversible stand-in cipher (never the identity). */
function fakeSafeStorage({ available = true, backend = 'gnome_libsecret' } = {}) {
  const mask = (b) => Buffer.from(b.map((x, i) => x ^ (0x5a + i) & 0xff));
  return {
    isEncryptionAvailable: () => available,
    getSelectedStorageBackend: () => backend,
    encryptString: (s) => Buffer.concat([Buffer.from('v10'), mask(Buffer.from(s, 'utf8'))]),
    decryptString: (b) => {
      if (b.subarray(0, 3).toString() !== 'v10') throw new Error('Error while decrypting the ciphertext provided to safeStorage.decryptString.');
      return mask(b.subarray(3)).toString('utf8');
    },
  };
}

test('every TideSync method a renderer may call is in the bridge, the preload and the class', () => {
  const own = Object.getOwnPropertyNames(TideSync.prototype).filter((m) => !m.startsWith('_') && !LIFECYCLE.has(m));
  assert.deepEqual([...METHODS].sort(), own.sort(), 'bridge METHODS = TideSync.prototype minus the lifecycle');
  const { port1, port2 } = new MessageChannel();
  const api = connect(port1);
  const exposed = Object.keys(api).filter((m) => !['subscribe', 'onStatus', 'live', 'isLeader', 'close'].includes(m));
  assert.deepEqual(exposed.sort(), own.sort(), 'preload exposes the same methods');
  for (const m of ['subscribe', 'onStatus', 'live', 'isLeader', 'close']) assert.equal(typeof api[m], 'function', m);
  port1.close(); port2.close();
  // The package's declarations (electron/*.d.ts, named in package.json's exports) declare what each module exports.
  for (const [mod, dts] of [['../electron/main.js', '../electron/main.d.ts'], ['../electron/bridge.js', '../electron/bridge.d.ts']]) {
    const text = fs.readFileSync(new URL(dts, import.meta.url), 'utf8');
    const declared = [...text.matchAll(/export (?:declare (?:function|const) (\w+)|\{ (\w+) \} from)/g)].map((m) => m[1] ?? m[2]).sort();
    assert.deepEqual(declared, Object.keys(require(mod)).sort(), dts);
  }
  const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  for (const entry of Object.values(pkg.exports)) {
    for (const f of typeof entry === 'string' ? [entry] : Object.values(entry)) {
      if (f !== './tidesync.node' && f !== './types.d.ts') assert.ok(fs.existsSync(new URL(`../${f}`, import.meta.url)), `package.json exports ${f}`);
    }
  }
});

test('a renderer reaches the addon over a MessagePort: calls, errors with codes, events, status, unsubscribe', async () => {
  const dir = tempDir('bridge');
  const server = await referenceServer(dir);
  const apiKey = server.issue('desk-1');
  const db = await TideSync.open(options(path.join(dir, 'desk.db'), server, 'desk-1', apiKey));
  const { port1, port2 } = new MessageChannel();
  const stop = serve(port1, db);
  const api = connect(port2);
  try {
    const events = [];
    const statuses = [];
    const offEvents = api.subscribe({ collection: 'rooms' }, (e) => events.push(e));
    const offStatus = api.onStatus((s) => statuses.push(s));
    await until(() => statuses.length > 0, 'the status on subscribe'); // onStatus sends the current status on subscribe
    const lives = [];
    const offLive = api.live({ collection: 'rooms' }, (rows) => lives.push(rows));
    await until(() => lives.length > 0, 'the live query\'s first rows');
    assert.deepEqual(lives[0], [], 'no rooms yet');
    const liveErrors = [];
    api.live({ collection: 'rooms', limit: 0 }, () => {}, (e) => liveErrors.push(e));
    await until(() => liveErrors.length > 0, 'a bad live query refused');
    assert.equal(liveErrors[0].code, 'BAD_ARGUMENT');

    const created = await api.create('rooms', { state: 'dirty', floor: 3 }, 'r-101');
    assert.equal(created.id, 'r-101');
    await api.patch('rooms', 'r-101', { state: 'clean' });
    const got = await api.get('rooms', 'r-101');
    assert.deepEqual(got.fields, { state: 'clean', floor: 3 });
    await until(() => events.filter((e) => e.type === 'changed' && e.key.id === 'r-101').length >= 2, 'two change events');
    await until(() => lives.at(-1)?.[0]?.fields.state === 'clean', 'the live rows over the port');
    offLive();

    // Errors cross the port with their stable code.
    await assert.rejects(api.patch('rooms', 'nope', { state: 'clean' }), (e) => e.code === 'NOT_FOUND' && e.name === 'TideSyncError');
    await assert.rejects(api.create('rooms', 'not an object'), (e) => e.code === 'BAD_ARGUMENT');
    await assert.rejects(api.create('rooms', { when: () => 1 }), (e) => e.code === 'BAD_ARGUMENT', 'a function cannot cross the port');
    await assert.rejects(api.create('rooms', { at: new Date() }), (e) => e.code === 'BAD_ARGUMENT', 'a Date is not JSON: refused, not stringified');

    // A method outside the list is refused by the main process, whatever the renderer sends.
    const raw = new Promise((resolve) => { port2.onmessage = (e) => { if (e.data.id === 999999) resolve(e.data); }; });
    port2.postMessage({ t: 'call', id: 999999, method: 'wipe', args: [] });
    const refused = await raw;
    assert.equal(refused.error.code, 'BAD_ARGUMENT');
    assert.equal(fs.existsSync(path.join(dir, 'desk.db')), true, 'the store is still there');
    // connect() set its own handler; put it back for the rest.
    port2.close(); stop();

    const ch2 = new MessageChannel();
    const stop2 = serve(ch2.port1, db);
    const api2 = connect(ch2.port2);
    const seen = [];
    const off = api2.subscribe({ collection: 'rooms', id: 'r-102' }, (e) => { if (e.type === 'changed') seen.push(e); });
    await api2.status(); // the subscription is registered before this answer
    await api2.create('rooms', { state: 'dirty' }, 'r-102');
    await api2.create('rooms', { state: 'dirty' }, 'r-103'); // another id: filtered out
    await until(() => seen.length === 1, 'the filtered event');
    assert.equal(seen[0].key.id, 'r-102');
    off();
    await api2.status();
    await api2.patch('rooms', 'r-102', { state: 'clean' });
    await api2.status();
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(seen.length, 1, 'no event after unsubscribe');

    // Sync through the bridge, exactly once.
    await api2.syncNow();
    const s = await api2.status();
    assert.equal(s.pending, 0);
    assert.equal(typeof (await api2.metrics()), 'object');
    assert.equal((await api2.outbox()).length, 0);
    api2.close();
    await assert.rejects(api2.status(), (e) => e.code === 'INVALID_STATE');
    ch2.port2.close(); stop2();
    offEvents(); offStatus();
  } finally {
    db.close();
    await server.stop();
  }
});

test('the host key lives only wrapped by safeStorage, and a weak keyring is refused', async () => {
  const dir = tempDir('safestorage');
  const file = path.join(dir, 'tidesync.key.enc');
  const ss = fakeSafeStorage();
  const k1 = keyFromSafeStorage(ss, file);
  assert.equal(k1.length, 32);
  assert.equal((fs.statSync(file).mode & 0o777), 0o600, 'owner-only');
  const raw = fs.readFileSync(file);
  assert.ok(!raw.includes(Buffer.from(k1.toString('hex'))) && !raw.includes(k1), 'the key is not on disk in the clear');
  assert.deepEqual(keyFromSafeStorage(ss, file), k1, 'the same key on the next start');
  assert.equal(fs.existsSync(`${file}.tmp`), false);

  assert.throws(() => keyFromSafeStorage(fakeSafeStorage({ backend: 'basic_text' }), path.join(dir, 'weak.enc')), (e) => e.code === 'STORE_WRONG_KEY');
  assert.equal(fs.existsSync(path.join(dir, 'weak.enc')), false, 'nothing written when refused');
  assert.equal(keyFromSafeStorage(fakeSafeStorage({ backend: 'basic_text' }), path.join(dir, 'weak.enc'), { allowWeak: true }).length, 32);
  assert.throws(() => keyFromSafeStorage(fakeSafeStorage({ available: false }), path.join(dir, 'none.enc')), (e) => e.code === 'STORE_WRONG_KEY');
  fs.writeFileSync(path.join(dir, 'junk.enc'), ss.encryptString('not a key'));
  assert.throws(() => keyFromSafeStorage(ss, path.join(dir, 'junk.enc')), (e) => e.code === 'STORE_WRONG_KEY');
});

test('openForElectron: the store in userData under a safeStorage key, served to each window, closed at quit', async () => {
  const dir = tempDir('electron');
  const server = await referenceServer(dir);
  const apiKey = server.issue('desk-2');
  const app = Object.assign(new EventEmitter(), { getPath: (n) => { assert.equal(n, 'userData'); return dir; } });
  const ipcMain = new EventEmitter();
  class MessageChannelMain { constructor() { const c = new MessageChannel(); this.port1 = c.port1; this.port2 = c.port2; } }
  const electron = { app, ipcMain, MessageChannelMain, safeStorage: fakeSafeStorage() };
  const opts = { serverUrl: server.url, apiKey, terminalId: 'desk-2', branchId: 'b1', autoSync: false };
  let db = await openForElectron(electron, opts);
  try {
    // A window's preload asks for a port; the main process answers with one.
    const sender = Object.assign(new EventEmitter(), {
      posted: null,
      postMessage(channel, _msg, ports) { this.posted = { channel, port: ports[0] }; },
    });
    ipcMain.emit('tidesync:connect', { sender });
    assert.equal(sender.posted.channel, 'tidesync:port');
    const api = connect(sender.posted.port);
    await api.create('rooms', { state: 'dirty' }, 'r-201');
    await api.syncNow();
    assert.equal((await api.status()).pending, 0);
    sender.emit('destroyed'); // the window closed: its port is closed
    sender.posted.port.close();

    app.emit('will-quit');
    await assert.rejects(db.status(), (e) => e.code === 'INVALID_STATE');
    assert.ok(fs.existsSync(path.join(dir, 'tidesync.db')) && fs.existsSync(path.join(dir, 'tidesync.key.enc')));

    // Next start: same key from safeStorage, same data.
    db = await openForElectron({ ...electron, app: Object.assign(new EventEmitter(), { getPath: () => dir }) }, opts);
    assert.equal((await db.get('rooms', 'r-201')).fields.state, 'dirty');
    db.close();
    // Another machine's safeStorage cannot open it.
    const other = { ...electron, safeStorage: { ...fakeSafeStorage(), decryptString: () => 'f'.repeat(64) } };
    await assert.rejects(openForElectron({ ...other, app: Object.assign(new EventEmitter(), { getPath: () => dir }) }, opts), (e) => e.code === 'STORE_WRONG_KEY');
  } finally {
    db.close();
    await server.stop();
  }
});
