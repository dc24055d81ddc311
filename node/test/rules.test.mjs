// The server's rules file, given to the client as its `rules` option: a
// write the server would refuse is refused at once, with the
// server's own code and message, and never queued; what the client
// accepts, the server applies. Checked against the reference server run
// with the same file, write by write, beside a client without the rules
// (whose writes come back as dead letters).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { TideSync, referenceServer, options, tempDir } from './support.mjs';
import { RULES, WRITES, judge } from '../../www/e2e/rules-cases.mjs';

test('the rules option refuses at once exactly what the server refuses, with its code and message', async () => {
  const dir = tempDir('rules');
  const file = path.join(dir, 'rules.json');
  fs.writeFileSync(file, JSON.stringify(RULES));
  const server = await referenceServer(dir, ['--rules', file]);
  try {
    const key = server.issue('desk-1');
    const open = (name, extra) => TideSync.open(options(path.join(dir, name), server, 'desk-1', key, extra));
    const checked = await open('checked.db', { rules: RULES });
    const plain = await open('plain.db');
    const appender = await open('appender.db', { policies: { sales: 'append-only' } });
    const verdicts = await judge(checked, plain, appender);
    for (const v of verdicts) assert.deepEqual(v.local, v.server, JSON.stringify(v.write));
    const refused = verdicts.filter((v) => v.local);
    assert.equal(refused.length, 9, 'each broken rule is refused');
    assert.deepEqual([...new Set(refused.map((v) => v.local[0]))].sort(), ['EVENT_INVALID', 'POLICY_VIOLATION']);
    await checked.syncNow();
    assert.deepEqual(await checked.deadLetters(), [], 'what the rules accepted, the server applied');
    assert.equal((await checked.metrics()).synced, WRITES.length - 9);
    for (const db of [checked, plain, appender]) db.close();

    // A bad rules file or a policy against it: BAD_ARGUMENT, nothing opened.
    await assert.rejects(open('typo.db', { rules: { rooms: { fields: { status: { typ: 'string' } } } } }),
      (e) => e.code === 'BAD_ARGUMENT' && /typ/.test(e.message));
    await assert.rejects(open('policy.db', { rules: RULES, policies: { sales: 'last-write-wins' } }),
      (e) => e.code === 'BAD_ARGUMENT' && /options\.policies\.sales/.test(e.message));
  } finally {
    await server.stop();
  }
});

test('maxUploadBytesPerSec caps a sync: the first batch goes, the rest waits its turn; retry options are checked', async () => {
  const dir = tempDir('bandwidth');
  const server = await referenceServer(dir);
  try {
    const key = server.issue('desk-2');
    const open = (name, extra) => TideSync.open(options(path.join(dir, name), server, 'desk-2', key, extra));
    const fill = async (db, prefix) => {
      for (let i = 0; i < 120; i++) await db.create('rooms', { status: 'dirty', note: 'x'.repeat(200) }, `${prefix}${i}`);
    };
    // 1,000 bytes a second: the first request (at most 50 mutations of
    // ~400 bytes) spends the next ~20 s, so one syncNow sends it alone.
    const capped = await open('capped.db', { maxUploadBytesPerSec: 1000, retry: { baseMs: 50, capMs: 5000 } });
    await fill(capped, 'c');
    await capped.syncNow();
    const m = await capped.metrics();
    assert.equal(m.push_requests, 1, 'one request, then the cap holds the rest');
    assert.ok((await capped.status()).pending >= 70, 'the rest is still queued');
    capped.close();
    // Without the cap the same sync sends everything.
    const free = await open('free.db');
    await fill(free, 'f');
    await free.syncNow();
    assert.equal((await free.status()).pending, 0);
    free.close();

    for (const [extra, re] of [
      [{ maxUploadBytesPerSec: 0 }, /maxUploadBytesPerSec/],
      [{ retry: { baseMs: 0 } }, /retry\.baseMs/],
      [{ retry: { baseMs: 1000, capMs: 10 } }, /retry\.capMs/],
      [{ retry: { base: 5 } }, /base/],
    ]) {
      await assert.rejects(open('bad.db', extra), (e) => e.code === 'BAD_ARGUMENT' && re.test(e.message), JSON.stringify(extra));
    }
  } finally {
    await server.stop();
  }
});
