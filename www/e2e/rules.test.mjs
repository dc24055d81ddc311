// The rules option in headless Chromium: a page gives the server's rules
// file to TideSync.open, and a write the server would refuse is refused at
// once with the server's own code and message and never queued; what it
// accepts, the server applies. Judged write by write against the reference
// server run with the same file (www/e2e/rules-cases.mjs; the Node addon's
// node/test/rules.test.mjs runs the same cases).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startStaticServer } from '../server.mjs';
import { ROOT, CHROMIUM, ARGS, openPage } from './chromium.mjs';
import { startSyncServer, findServerBinary } from './sync-server.mjs';
import { RULES, WRITES } from './rules-cases.mjs';


let sync, web, dir;
before(async () => {
  if (!findServerBinary()) throw new Error('the reference server is not built (cargo build -p tidesync-server)');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tidesync-rules-'));
  fs.writeFileSync(path.join(dir, 'rules.json'), JSON.stringify(RULES));
  sync = await startSyncServer({ args: ['--rules', path.join(dir, 'rules.json')] });
  web = await startStaticServer({ root: ROOT, upstream: sync.url });
});
after(async () => {
  await web?.close(); await sync?.close();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('the rules option refuses at once exactly what the server refuses, with its code and message', async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  try {
    const page = await openPage(await browser.newContext(), web.url);
    const base = { key: { webCrypto: true }, serverUrl: '', apiKey: sync.apiKey,
      terminalId: sync.terminal, branchId: sync.branch, autoSync: false };
    const got = await page.evaluate(async (base) => {
      const { RULES, judge } = await import('/www/e2e/rules-cases.mjs');
      const checked = await TideSync.open({ ...base, dbName: 'rules-checked', rules: RULES });
      const plain = await TideSync.open({ ...base, dbName: 'rules-plain' });
      const appender = await TideSync.open({ ...base, dbName: 'rules-appender', policies: { sales: 'append-only' } });
      const verdicts = await judge(checked, plain, appender);
      await checked.syncNow();
      const out = { verdicts, dead: (await checked.deadLetters()).length, synced: (await checked.metrics()).synced };
      for (const db of [checked, plain, appender]) db.close();
      const code = async (opts) => { try { (await TideSync.open(opts)).close(); return null; } catch (e) { return [e.code, e.message]; } };
      out.typo = await code({ ...base, dbName: 'rules-typo', rules: { rooms: { fields: { status: { typ: 'string' } } } } });
      out.unknown = await code({ ...base, dbName: 'rules-unknown', pullIntervalMS: 5, apiKey: undefined });
      out.badRetry = await code({ ...base, dbName: 'rules-retry', retry: { baseMs: 0 } });
      // 1,000 bytes a second: one syncNow sends the first request alone.
      const capped = await TideSync.open({ ...base, dbName: 'rules-capped', maxUploadBytesPerSec: 1000, retry: { baseMs: 50, capMs: 5000 } });
      for (let i = 0; i < 120; i++) await capped.create('rooms', { number: `c${i}`, status: 'dirty', note: 'x'.repeat(200) }, `c${i}`);
      await capped.syncNow();
      out.capped = [(await capped.metrics()).push_requests, (await capped.status()).pending];
      capped.close();
      out.policy = await code({ ...base, dbName: 'rules-policy', rules: RULES, policies: { sales: 'last-write-wins' } });
      return out;
    }, base);
    assert.equal(got.verdicts.length, WRITES.length);
    for (const v of got.verdicts) assert.deepEqual(v.local, v.server, JSON.stringify(v.write));
    const refused = got.verdicts.filter((v) => v.local);
    assert.equal(refused.length, 9, 'each broken rule is refused');
    assert.equal(got.dead, 0, 'what the rules accepted, the server applied');
    assert.equal(got.synced, WRITES.length - 9);
    assert.equal(got.typo?.[0], 'BAD_ARGUMENT');
    assert.match(got.typo[1], /typ/);
    assert.equal(got.unknown?.[0], 'BAD_ARGUMENT', 'an unknown option (a typo) is refused, undefined ones are absent');
    assert.match(got.unknown[1], /pullIntervalMS/);
    assert.equal(got.badRetry?.[0], 'BAD_ARGUMENT');
    assert.match(got.badRetry[1], /retry\.baseMs/);
    assert.equal(got.capped[0], 1, 'maxUploadBytesPerSec: one request, then the cap holds the rest');
    assert.ok(got.capped[1] >= 70, `the rest is still queued (${got.capped[1]})`);
    assert.equal(got.policy?.[0], 'BAD_ARGUMENT');
    assert.match(got.policy[1], /options\.policies\.sales/);
  } finally {
    await browser.close();
  }
});
