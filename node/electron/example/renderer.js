'use strict';
// The window: the same calls as in the browser package, through window.tidesync.
const db = window.tidesync;
const rooms = new Map();
const tbody = document.getElementById('rooms');

function render() {
  tbody.replaceChildren(...[...rooms.values()].sort((a, b) => a.id.localeCompare(b.id)).map((r) => {
    const tr = document.createElement('tr');
    const button = document.createElement('button');
    button.textContent = r.fields.status === 'clean' ? 'Mark dirty' : 'Mark clean';
    button.onclick = () => db.patch('rooms', r.id, { status: r.fields.status === 'clean' ? 'dirty' : 'clean' })
      .catch((e) => alert(`${e.code}: ${e.message}`));
    for (const text of [r.fields.number ?? r.id, r.fields.status ?? '']) {
      const td = document.createElement('td'); td.textContent = text; tr.append(td);
    }
    const td = document.createElement('td'); td.append(button); tr.append(td);
    return tr;
  }));
}

async function load() {
  let after;
  for (;;) {
    const page = await db.query('rooms', { after, limit: 500 });
    for (const r of page) rooms.set(r.id, r);
    if (page.length < 500) break;
    after = page[page.length - 1].id;
  }
  render();
}

db.onStatus((s) => {
  document.getElementById('status').textContent =
    `${s.phase} · ${s.pending} pending · ${s.dead_letters} dead letters · ${s.conflicts} conflicts`;
});
db.subscribe({ collection: 'rooms' }, async (e) => {
  if (e.type !== 'changed') return;
  const r = await db.get('rooms', e.key.id);
  if (r && !r.deleted) rooms.set(r.id, r); else rooms.delete(e.key.id);
  render();
});
load();
