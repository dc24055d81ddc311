// Hold for review (issue 18) in headless Chromium, on IndexedDB and the
// reference server: a write held with `{hold: true}` is not sent, a later
// write of the same room waits behind it while other rooms go, the hold
// survives a reload, and a person releases it (sent once, in order) or
// discards it (never sent, the view replayed without it). The Node addon's
// node/test/review.test.mjs runs the same story on SQLCipher.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { CHROMIUM, ARGS, openPage, useServers } from './chromium.mjs';

const servers = useServers();

test('a held write waits for a person across a reload; released it is sent once, discarded never', async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  try {
    const ctx = await browser.newContext();
    let page = await openPage(ctx, servers.web.url);
    const base = { key: { webCrypto: true }, serverUrl: '', apiKey: servers.sync.apiKey,
      terminalId: servers.sync.terminal, branchId: servers.sync.branch, autoSync: false, live: false };
    const opts = { ...base, dbName: 'review', review: { rooms: 'hold_flagged' } };
    const first = await page.evaluate(async (opts) => {
      const db = await TideSync.open(opts);
      await db.create('rooms', { number: '101', status: 'dirty', rate: 120 }, '101');
      await db.create('rooms', { number: '102', status: 'dirty', rate: 130 }, '102');
      await db.syncNow();
      const view = await db.patch('rooms', '101', { rate: 12000 }, { hold: true });
      await db.patch('rooms', '101', { status: 'clean' });
      await db.patch('rooms', '102', { status: 'clean' });
      await db.patch('rooms', '102', { rate: 1 }, { hold: true });
      await db.syncNow();
      const st = await db.status();
      const bad = [];
      for (const o of [{ hold: 'yes' }, { holdd: true }, 5]) {
        try { await db.patch('rooms', '101', { rate: 5 }, o); bad.push(null); } catch (e) { bad.push([e.code, e.message]); }
      }
      const after = (await db.get('rooms', '101')).fields.rate;
      db.close();
      return { rate: view.fields.rate, pending: view.pending, counts: [st.held, st.pending, st.dead_letters], bad, after };
    }, opts);
    assert.equal(first.rate, 12000, 'the local view shows the held change');
    assert.equal(first.pending, 0, 'a held write is not pending');
    assert.deepEqual(first.counts, [2, 1, 0]);
    assert.ok(first.bad.every((b) => b && b[0] === 'BAD_ARGUMENT'), JSON.stringify(first.bad));
    assert.match(first.bad[1][1], /holdd/);
    assert.equal(first.after, 12000, 'a refused write changes nothing');

    // What the server has, read by another database of this terminal.
    const serverRooms = (name) => page.evaluate(async ({ base, name }) => {
      const reader = await TideSync.open({ ...base, dbName: name });
      await reader.syncNow();
      const rows = Object.fromEntries((await reader.query('rooms')).map((e) => [e.id, e.fields]));
      reader.close();
      return rows;
    }, { base, name });
    let remote = await serverRooms('reader-1');
    assert.deepEqual([remote['101'].rate, remote['101'].status], [120, 'dirty'], 'held, and the write behind it waits');
    assert.equal(remote['102'].status, 'clean', 'another write of that room, before its hold, went');

    await page.reload();
    await page.waitForFunction(() => window.ready === true);
    const second = await page.evaluate(async (opts) => {
      const db = await TideSync.open(opts);
      const held = await db.held();
      const shape = held.map((e) => [e.mutation.entity_id, e.state.state, e.state.reason]);
      await db.release(held[0].seq);
      await db.discard(held[1].seq);
      const replayed = (await db.get('rooms', '102')).fields.rate;
      await db.syncNow();
      const st = await db.status();
      const events = (await db.audit({ limit: 1000 })).filter((a) => a.op_id === held[0].mutation.op_id).map((a) => a.event.event);
      let again = null;
      try { await db.release(held[0].seq); } catch (e) { again = e.code; }
      db.close();
      return { shape, replayed, counts: [st.held, st.pending], events, again };
    }, opts);
    assert.deepEqual(second.shape, [['101', 'held', 'requested'], ['102', 'held', 'requested']], 'the holds survived the reload');
    assert.equal(second.replayed, 130, 'the view is replayed without the discarded write');
    assert.deepEqual(second.counts, [0, 0]);
    assert.deepEqual(second.events.filter((e) => e !== 'rebased'), ['queued', 'held', 'released', 'applied']);
    assert.equal(second.again, 'NOT_FOUND', 'only a held write is released');
    remote = await serverRooms('reader-2');
    assert.deepEqual([remote['101'].rate, remote['101'].status], [12000, 'clean'], 'released: both changes, in order');
    assert.equal(remote['102'].rate, 130, 'discarded: never sent');
    page = null;
  } finally {
    await browser.close();
  }
});

test('a JS scorer flags a write in the page: held with its score, sent with it once released; a broken scorer never fails a write', async () => {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  try {
    const page = await openPage(await browser.newContext(), servers.web.url);
    const base = { key: { webCrypto: true }, serverUrl: '', apiKey: servers.sync.apiKey,
      terminalId: servers.sync.terminal, branchId: servers.sync.branch, autoSync: false, live: false };
    const got = await page.evaluate(async (opts) => {
      const { rateScorer, BROKEN } = await import('/www/e2e/review-cases.mjs');
      const db = await TideSync.open(opts);
      const seen = [];
      db.setScorer(rateScorer(seen));
      await db.create('rooms', { number: '301', status: 'dirty', rate: 120 }, '301');
      await db.syncNow();
      await db.patch('rooms', '301', { rate: 12000 });
      const [held] = await db.held();
      await db.syncNow();
      const statusHeld = (await db.status()).held;
      await db.release(held.seq);
      await db.syncNow();
      const scored = (await db.audit({ limit: 1000 })).filter((a) => a.op_id === held.mutation.op_id).map((a) => a.event).find((e) => e.event === 'scored');
      const failures = [];
      for (const [score, code] of BROKEN) {
        db.setScorer({ model: 'ab', score });
        const v = await db.patch('rooms', '301', { rate: 50000 });
        const out = await db.outbox();
        const last = out[out.length - 1];
        const evs = (await db.audit({ limit: 1000 })).filter((a) => a.op_id === last.mutation.op_id).map((a) => a.event);
        failures.push([v.pending, last.mutation.anomaly ?? null, evs.find((e) => e.event === 'score_failed')?.code, code]);
        await db.syncNow();
      }
      const bad = [];
      for (const s of [{ model: 'NOT-HEX', score: () => null }, { model: 'ab' }, 5]) {
        try { db.setScorer(s); bad.push(null); } catch (e) { bad.push(e.code); }
      }
      db.setScorer(null);
      const st = await db.status();
      const leak = JSON.stringify(await db.audit({ limit: 1000 })).includes('Smith');
      db.close();
      return { seen: seen[1], state: [held.state.state, held.state.reason], anomaly: held.mutation.anomaly, statusHeld, scored, failures, bad, end: [st.pending, st.held], leak };
    }, { ...base, dbName: 'review-scorer', review: { rooms: 'hold_flagged' } });
    assert.deepEqual(got.seen, { collection: 'rooms', entity_id: '301', kind: 'patch', before: { number: '301', status: 'dirty', rate: 120 },
      after: { number: '301', status: 'dirty', rate: 12000 }, at_ms: got.seen.at_ms });
    assert.deepEqual(got.state, ['held', 'flagged']);
    assert.deepEqual(got.anomaly, { score: 12, flagged: true, model: '5eed' });
    assert.equal(got.statusHeld, 1, 'flagged: held through a sync');
    assert.deepEqual(got.scored, { event: 'scored', anomaly: { score: 12, flagged: true, model: '5eed' } });
    for (const [pending, anomaly, code, want] of got.failures) assert.deepEqual([pending, anomaly, code], [1, null, want]);
    assert.deepEqual(got.bad, ['BAD_ARGUMENT', 'BAD_ARGUMENT', 'BAD_ARGUMENT']);
    assert.deepEqual(got.end, [0, 0]);
    assert.equal(got.leak, false, 'what the scorer threw is not kept');
  } finally {
    await browser.close();
  }
});
