// Hold for review (issue 18) through the Node package, on SQLCipher files
// and the reference server over loopback: a write held with `{hold: true}`
// is not sent, later writes of the same entity wait behind it while other
// entities go, it survives a restart, and a person releases it (sent once,
// in order) or discards it (never sent, the view replayed without it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { TideSync, loadModel, referenceServer, options, serverView, tempDir } from './support.mjs';
import { rateScorer, BROKEN } from '../../www/e2e/review-cases.mjs';

test('a held write waits for a person across a restart; released it is sent once, discarded never', async () => {
  const dir = tempDir('review');
  const server = await referenceServer(dir);
  try {
    const key = server.issue('desk-r');
    const file = path.join(dir, 'desk.db');
    const open = (extra) => TideSync.open(options(file, server, 'desk-r', key, { review: { rooms: 'hold_flagged' }, ...extra }));
    let db = await open();
    await db.create('rooms', { status: 'dirty', rate: 120 }, '101');
    await db.create('rooms', { status: 'dirty', rate: 130 }, '102');
    await db.syncNow();
    const view = await db.patch('rooms', '101', { rate: 12000 }, { hold: true });
    assert.equal(view.fields.rate, 12000, 'the local view shows the held change');
    assert.equal(view.pending, 0, 'a held write is not pending');
    await db.patch('rooms', '101', { status: 'clean' });
    await db.patch('rooms', '102', { status: 'clean' });
    await db.patch('rooms', '102', { rate: 1 }, { hold: true });
    await db.syncNow();
    let st = await db.status();
    assert.deepEqual([st.held, st.pending, st.dead_letters], [2, 1, 0]);
    let remote = await serverView(server, dir, 'rooms');
    assert.deepEqual([remote.get('101').fields.rate, remote.get('101').fields.status], [120, 'dirty'], 'held, and the write behind it waits');
    assert.equal(remote.get('102').fields.status, 'clean', 'another write of that room before its hold went');

    // A restart keeps the holds.
    db.close();
    db = await open();
    const held = await db.held();
    assert.equal(held.length, 2);
    assert.deepEqual(held.map((e) => [e.mutation.entity_id, e.state.state, e.state.reason]),
      [['101', 'held', 'requested'], ['102', 'held', 'requested']]);
    assert.equal((await db.status()).held, 2);

    await db.release(held[0].seq);
    await db.discard(held[1].seq);
    assert.equal((await db.get('rooms', '102')).fields.rate, 130, 'the view is replayed without the discarded write');
    await db.syncNow();
    st = await db.status();
    assert.deepEqual([st.held, st.pending], [0, 0]);
    remote = await serverView(server, dir, 'rooms');
    assert.deepEqual([remote.get('101').fields.rate, remote.get('101').fields.status], [12000, 'clean'], 'released: both changes, in order');
    assert.equal(remote.get('102').fields.rate, 130, 'discarded: never sent');
    const events = (await db.audit({ limit: 1000 })).filter((a) => a.op_id === held[0].mutation.op_id).map((a) => a.event.event);
    assert.deepEqual(events.filter((e) => e !== 'rebased'), ['queued', 'held', 'released', 'applied']);
    await assert.rejects(db.release(held[0].seq), (e) => e.code === 'NOT_FOUND', 'only a held write is released');

    // Bad options: BAD_ARGUMENT, nothing written.
    await assert.rejects(db.patch('rooms', '101', { rate: 5 }, { hold: 'yes' }), (e) => e.code === 'BAD_ARGUMENT' && /hold/.test(e.message));
    await assert.rejects(db.create('rooms', { rate: 5 }, '103', { holdd: true }), (e) => e.code === 'BAD_ARGUMENT' && /holdd/.test(e.message));
    assert.equal(await db.get('rooms', '103'), null);
    assert.equal((await db.get('rooms', '101')).fields.rate, 12000);
    db.close();
    await assert.rejects(open({ review: { rooms: 'hold_everything' } }), (e) => e.code === 'BAD_ARGUMENT' && /hold_everything/.test(e.message));
  } finally {
    await server.stop();
  }
});

test('a JS scorer flags a write, which is held with its score and sent with it once released; a broken scorer never fails a write', async () => {
  const dir = tempDir('review-scorer');
  const server = await referenceServer(dir);
  try {
    const key = server.issue('desk-s');
    const db = await TideSync.open(options(path.join(dir, 'desk.db'), server, 'desk-s', key, { review: { rooms: 'hold_flagged' } }));
    const seen = [];
    db.setScorer(rateScorer(seen));
    await db.create('rooms', { status: 'dirty', rate: 120 }, '201');
    await db.create('sales', { total: 5 }, 's1');
    await db.syncNow();
    await db.patch('rooms', '201', { rate: 12000 });
    assert.deepEqual(seen[2], { collection: 'rooms', entity_id: '201', kind: 'patch', before: { status: 'dirty', rate: 120 },
      after: { status: 'dirty', rate: 12000 }, at_ms: seen[2].at_ms });
    assert.equal(seen[1].collection, 'sales', 'every write is shown; the scorer picks');
    const [held] = await db.held();
    assert.deepEqual([held.state.state, held.state.reason], ['held', 'flagged']);
    assert.deepEqual(held.mutation.anomaly, { score: 12, flagged: true, model: '5eed' });
    await db.syncNow();
    assert.equal((await serverView(server, dir, 'rooms')).get('201').fields.rate, 120, 'flagged: not sent');
    await db.release(held.seq);
    await db.syncNow();
    assert.equal((await serverView(server, dir, 'rooms')).get('201').fields.rate, 12000);
    const events = (await db.audit({ limit: 1000 })).filter((a) => a.op_id === held.mutation.op_id).map((a) => a.event);
    assert.deepEqual(events.find((e) => e.event === 'scored'), { event: 'scored', anomaly: { score: 12, flagged: true, model: '5eed' } });

    // A scorer that throws, answers a promise or junk: the write goes on, unscored, audited with a code.
    for (const [score, code] of BROKEN) {
      db.setScorer({ model: 'ab', score });
      const v = await db.patch('rooms', '201', { rate: 50000 });
      assert.equal(v.pending, 1, code);
      const out = await db.outbox();
      const last = out[out.length - 1];
      assert.equal(last.mutation.anomaly, undefined);
      const evs = (await db.audit({ limit: 1000 })).filter((a) => a.op_id === last.mutation.op_id).map((a) => a.event);
      assert.deepEqual(evs.find((e) => e.event === 'score_failed'), { event: 'score_failed', code });
      await db.syncNow();
    }
    assert.ok(!JSON.stringify(await db.audit({ limit: 1000 })).includes('Smith'), 'what the scorer threw is not kept');
    db.setScorer(null);
    assert.throws(() => db.setScorer({ model: 'NOT-HEX', score: () => null }), (e) => e.code === 'BAD_ARGUMENT' && /scorer\.model/.test(e.message));
    assert.throws(() => db.setScorer({ model: 'ab' }), (e) => e.code === 'BAD_ARGUMENT');
    assert.deepEqual([(await db.status()).pending, (await db.status()).held], [0, 0]);
    db.close();
  } finally {
    await server.stop();
  }
});

test('the tract model of models/, loaded natively and allow-listed, flags a room rate typo offline; a bad model is a clear error and nothing changes', async () => {
  const fs = await import('node:fs');
  const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
  const model = fs.readFileSync(path.join(root, 'models/anomaly.onnx'));
  const features = fs.readFileSync(path.join(root, 'models/anomaly.features.json'), 'utf8');
  const sha = fs.readFileSync(path.join(root, 'models/anomaly.onnx.sha256'), 'utf8').trim().split(/\s+/)[0];
  for (const [opts, code] of [[{ model: new Uint8Array(0), features, sha256: [sha] }, 'MODEL_MISSING'],
    [{ model, features, sha256: ['0'.repeat(64)] }, 'MODEL_NOT_ALLOWED'],
    [{ model: Buffer.from('not onnx'), features, sha256: [await sha256Of(Buffer.from('not onnx'))] }, 'MODEL_CORRUPT']]) {
    assert.throws(() => loadModel(opts), (e) => e.code === code, code);
  }
  const scorer = loadModel({ model, features, sha256: [sha] });
  assert.equal(scorer.model, sha.slice(0, 16));
  // At a fixed hour (noon UTC), the model's own verdicts.
  const noon = Date.UTC(2026, 11, 7, 12);
  const room = (before, after, kind = 'patch') => scorer.score({ collection: 'rooms', entity_id: '9', kind, before, after, at_ms: noon });
  assert.equal(room(null, { status: 'clean', rate: 120 }, 'create').flagged, false);
  assert.equal(room({ status: 'clean', rate: 120 }, { status: 'occupied', rate: 120 }).flagged, false);
  assert.equal(room({ status: 'occupied', rate: 120 }, { status: 'occupied', rate: 12000 }).flagged, true);
  assert.equal(room({ status: 'out_of_order', rate: 120 }, { status: 'occupied', rate: 120 }).flagged, true, 'an impossible status jump');
  assert.equal(scorer.score({ collection: 'guests', entity_id: 'g', kind: 'create', before: null, after: {}, at_ms: noon }), null, 'not scored');

  const dir = tempDir('review-tract');
  const server = await referenceServer(dir);
  try {
    const key = server.issue('desk-m');
    const db = await TideSync.open(options(path.join(dir, 'desk.db'), server, 'desk-m', key, { review: { rooms: 'hold_flagged' } }));
    assert.throws(() => db.setScorer({ model: 'ab', score: 5 }), (e) => e.code === 'BAD_ARGUMENT');
    db.setScorer(scorer);
    await db.syncNow();
    await db.setOnline(false);
    await db.create('rooms', { status: 'clean', rate: 120 }, '401');
    await db.patch('rooms', '401', { status: 'occupied' });
    await db.patch('rooms', '401', { rate: 12000 });
    const outbox = await db.outbox();
    const [normal, clean, typo] = outbox.map((e) => e.mutation.anomaly);
    for (const a of [normal, clean, typo]) assert.equal(a?.model, scorer.model, JSON.stringify(outbox.map((e) => e.mutation.anomaly)));
    assert.equal(typo.flagged, true, `the typo is flagged (${typo.score})`);
    assert.ok(typo.score > normal.score && typo.score > clean.score);
    // (The normal writes score by the hour of this run too: at an odd hour
    // one may be flagged and held as well, which is the model's call.)
    const held = await db.held();
    assert.ok(held.some((e) => e.mutation.op_id === outbox[2].mutation.op_id && e.state.reason === 'flagged'));
    await db.setOnline(true);
    for (const e of held) await db.release(e.seq);
    await db.syncNow();
    assert.equal((await serverView(server, dir, 'rooms')).get('401').fields.rate, 12000);
    db.close();
  } finally {
    await server.stop();
  }
});

async function sha256Of(bytes) {
  const { createHash } = await import('node:crypto');
  return createHash('sha256').update(bytes).digest('hex');
}
