// Keys and encryption through the addon, as an app uses them: a wrong key
// is STORE_WRONG_KEY and changes nothing; the files on disk (database, -wal,
// key envelope) hold none of the values, ids, passphrase or host key that
// went through the engine (entities, outbox, audit, sync state); a flipped
// byte is STORE_CORRUPT.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { TideSync, deadUrl, options, tempDir } from './support.mjs';

const files = (db) => [db, `${db}-wal`, `${db}.key`].filter((f) => fs.existsSync(f));
const digest = (db) => files(db).map((f) => [path.basename(f), crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex')]);

async function fill(file, key, n = 200) {
  const db = await TideSync.open({ ...options(file, await deadUrl(), 'desk-1', 'k-secret-api-key'), key });
  for (let i = 0; i < n; i++) {
    await db.create('guests', { name: `Guest Needlename ${i}`, note: 'allergic-to-peanuts-zq', card: '4111111111111111' }, `guest-needleid-${String(i).padStart(4, '0')}`);
  }
  await db.patch('guests', 'guest-needleid-0001', { note: 'late-checkout-zq' });
  return db;
}

test('a wrong passphrase or host key is STORE_WRONG_KEY, changes nothing, and the right one still opens', async () => {
  for (const [right, wrong] of [
    [{ passphrase: 'correct horse battery staple' }, { passphrase: 'correct horse battery stapler' }],
    [{ hostKey: new Uint8Array(32).fill(3) }, { hostKey: new Uint8Array(32).fill(4) }],
  ]) {
    const dir = tempDir('wrongkey');
    const file = path.join(dir, 'desk.db');
    const db = await fill(file, right, 20);
    db.close();
    const before = digest(file);
    await assert.rejects(TideSync.open({ ...options(file, await deadUrl(), 'desk-1', 'k'), key: wrong }), (e) => e.code === 'STORE_WRONG_KEY', JSON.stringify(Object.keys(wrong)));
    await assert.rejects(TideSync.open({ ...options(file, await deadUrl(), 'desk-1', 'k'), key: { plaintext: true } }), (e) => e.code === 'STORE_KEY_MISMATCH', 'no key on an encrypted store');
    assert.deepEqual(digest(file), before, 'the refused opens changed no byte');
    const again = await TideSync.open({ ...options(file, await deadUrl(), 'desk-1', 'k'), key: right });
    assert.equal((await again.query('guests')).length, 20);
    assert.equal((await again.status()).pending, 21, '20 creates and a patch, still queued');
    again.close();
  }
});

test('the database, its -wal and the key envelope hold no plaintext of what went through the engine', async () => {
  const dir = tempDir('plaintext');
  const file = path.join(dir, 'desk.db');
  const passphrase = 'Pa55phrase-needle-zq';
  const db = await fill(file, { passphrase });
  try {
    // While open: the WAL holds the recent pages.
    const wal = `${file}-wal`;
    assert.ok(fs.existsSync(wal) && fs.statSync(wal).size > 0, 'WAL mode, with pages in the -wal');
    const needles = ['Needlename', 'needleid', 'allergic-to-peanuts', 'late-checkout', '4111111111111111', 'guests', passphrase, 'k-secret-api-key', 'desk-1'];
    for (const f of files(file)) {
      const bytes = fs.readFileSync(f);
      for (const n of needles) assert.equal(bytes.includes(Buffer.from(n)), false, `${path.basename(f)} holds ${n}`);
      assert.equal(bytes.includes(Buffer.from('SQLite format 3')), false, `${path.basename(f)} has a plain SQLite header`);
    }
    // The scan would have seen them in a plain store.
    const plainFile = path.join(dir, 'plain.db');
    const plain = await fill(plainFile, { plaintext: true }, 5);
    const bytes = Buffer.concat(files(plainFile).map((f) => fs.readFileSync(f)));
    assert.ok(bytes.includes(Buffer.from('Needlename')) && bytes.includes(Buffer.from('needleid')), 'the scan can see plaintext');
    plain.close();
  } finally {
    db.close();
  }
});

test('a flipped byte in a data page is STORE_CORRUPT, never wrong data', async () => {
  const dir = tempDir('corrupt');
  const file = path.join(dir, 'desk.db');
  const key = { hostKey: new Uint8Array(32).fill(9) };
  const db = await fill(file, key, 300);
  db.close(); // checkpoints the WAL into the file
  assert.equal(fs.existsSync(`${file}-wal`) ? fs.statSync(`${file}-wal`).size : 0, 0);
  const bytes = fs.readFileSync(file);
  const page = 4096;
  assert.ok(bytes.length >= 4 * page);
  const at = 2 * page + 100; // inside page 3, past the header page
  bytes[at] ^= 0x01;
  fs.writeFileSync(file, bytes);
  let error = null;
  try {
    const again = await TideSync.open({ ...options(file, await deadUrl(), 'desk-1', 'k'), key });
    try {
      await again.query('guests');
      await again.outbox();
      await again.audit();
    } finally {
      again.close();
    }
  } catch (e) {
    error = e;
  }
  assert.ok(error, 'the damage was noticed');
  assert.equal(error.code, 'STORE_CORRUPT', error.message);
});
