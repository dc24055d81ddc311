// The cases both rules tests judge (the browser's, www/e2e/rules.test.mjs,
// and the Node addon's, node/test/rules.test.mjs): the demo server's rules
// file (server/rules/hotel.json: typed rooms and sales, a read-only
// catalog, append-only sales) and writes that keep or break each kind of
// rule. `judge` runs them on a client given the rules and on clients
// without, which sync each and read the server's verdict from their dead
// letters. It runs as is in a page too (no Node imports here).

import HOTEL from '../../server/rules/hotel.json' with { type: 'json' };

/** The demo server's rules file, as is. */
export const RULES = HOTEL;

// [method, collection, id, fields]; the patches and the delete act on r101.
export const WRITES = [
  ['create', 'rooms', 'r101', { number: '101', status: 'dirty', floor: 1 }],
  ['create', 'rooms', 'r102', { number: '102', status: 'burnt' }],
  ['create', 'rooms', 'r103', { status: 'dirty' }],
  ['create', 'rooms', 'r104', { number: '104', status: 'dirty', floor: 2.5 }],
  ['create', 'rooms', 'r105', { number: '105', status: 'dirty', floor: 201 }],
  ['create', 'rooms', 'r106', { number: '1066666666666666666', status: 'dirty' }],
  ['patch', 'rooms', 'r101', { status: 'clean', note: 'ok' }],
  ['patch', 'rooms', 'r101', { status: null }],
  ['patch', 'rooms', 'r101', { note: null }],
  ['create', 'catalog', 'soap', { price: 3 }],
  ['create', 'sales', 's1', { total_cents: 1, currency: 'EUR', lines: [] }],
  ['append', 'sales', 's2', { total_cents: 250, currency: 'EUR', lines: [{ sku: 'A1' }] }],
  ['append', 'sales', 's3', { total_cents: 250, currency: 'XYZ', lines: [] }],
  ['delete', 'rooms', 'r101', null],
];

async function run(db, [method, collection, id, fields], prefix) {
  if (method === 'delete') return db.delete(collection, prefix + id);
  if (method === 'patch') return db.patch(collection, prefix + id, fields);
  return db[method](collection, fields, prefix + id);
}

/** Each write's verdict: `local` from `checked`, the client given RULES
 *  (null: accepted; else [code, message], and nothing was queued), and
 *  `server` from the server (null: applied; else the dead letter's
 *  [code, message]), through `plain`, a client without rules or policies,
 *  and for appends `appender`, without rules but with sales append-only
 *  (a client appends only to an append-only collection). The unchecked
 *  clients write other ids (prefix `u-`), so nothing of theirs meets the
 *  checked client's writes on the server. */
export async function judge(checked, plain, appender) {
  for (const db of [checked, plain, appender]) await db.syncNow();
  const out = [];
  for (const write of WRITES) {
    const before = (await checked.outbox()).length;
    let local = null;
    try { await run(checked, write, ''); } catch (e) { local = [e.code, e.message]; }
    const queued = (await checked.outbox()).length - before;
    if (queued !== (local ? 0 : 1)) throw new Error(`${JSON.stringify(write)}: ${queued} queued`);
    const db = write[0] === 'append' ? appender : plain;
    await run(db, write, 'u-');
    await db.syncNow();
    const dead = await db.deadLetters();
    let server = null;
    if (dead.length > 0) {
      server = [dead[0].state.code, dead[0].state.message];
      await db.discard(dead[0].seq);
    }
    out.push({ write, local, server });
  }
  return out;
}
