// The housekeeping app (issue 16, journey J-20): a board of room tasks
// (dirty → in progress → clean → inspected), a front-desk view, the sync pill,
// the Sync Center (outbox, dead letters, conflicts with a three-way diff) and
// the stale-primer modal, on the tidesync package (pkg/). Plain DOM, no
// framework. Every local action is one `patch`, durable before it resolves.
import init, {
  TideSync,
  type ConflictRecord,
  type Fields,
  type Identity,
  type Json,
  type LocalEntity,
  type OutboxEntry,
  type Status,
  type SyncEvent,
  type TideSyncError,
} from '../../../pkg/tidesync.js';
import { loadStaff, pairingFromHash, saveStaff, type PairingLink } from './pairing';

const STAFF = ['Amira', 'Bruno', 'Chen', 'Dana'];
const COLUMNS = [
  { id: 'dirty', title: 'Dirty' },
  { id: 'in_progress', title: 'In progress' },
  { id: 'clean', title: 'Clean' },
  { id: 'inspected', title: 'Inspected' },
] as const;
type Column = (typeof COLUMNS)[number]['id'];
const DAY_MS = 24 * 3600 * 1000;

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);
if (params.get('dir') === 'rtl') document.documentElement.dir = 'rtl';

/** The collections this app syncs. Their fields stay plain JSON: the board
 *  reads a room's fields defensively (the server holds what other terminals
 *  wrote) and the conflict view works over any field names. */
type Housekeeping = { rooms: Fields; telemetry: Fields };

interface AppWindow {
  hk?: { db: TideSync; latencies: { action: string; ms: number }[]; ready: boolean; identity: Identity; staff: string;
    /** The anomaly model's id once it scores this device's writes, or why it does not. */
    model?: { id: string } | { error: string } };
}
const win = window as unknown as AppWindow;

let db: TideSync<Housekeeping>;
let me = '';
const rooms = new Map<string, LocalEntity>();
let status: Status | null = null;
let view: 'board' | 'desk' | 'sync' = 'board';
const latencies: { action: string; ms: number }[] = [];

// ---------- telemetry: an append-only collection, synced through the outbox

let telemetryOn = true;
function mode(): 'offline' | 'online' {
  return !navigator.onLine || status?.phase === 'offline' ? 'offline' : 'online';
}
function track(event: string, props: Fields = {}): void {
  if (!telemetryOn) return;
  const fields: Fields = { event, mode: mode(), terminal: me, at_ms: Date.now(), ...props };
  db.append('telemetry', fields).catch(() => { /* telemetry never blocks work */ });
}

// ---------- model

function columnOf(e: LocalEntity): Column | null {
  const hk = e.fields.hk;
  if (hk === 'in_progress' || hk === 'paused') return 'in_progress';
  const s = e.fields.status;
  return s === 'dirty' || s === 'clean' || s === 'inspected' ? s : null;
}
const str = (v: Json | undefined): string => (v === undefined || v === null ? '' : typeof v === 'string' ? v : JSON.stringify(v));
const roomPending = (): number => [...rooms.values()].reduce((n, e) => n + e.pending, 0);

interface Action { label: string; verb: string; patch: (e: LocalEntity) => Fields | null }
function actionsFor(e: LocalEntity): Action[] {
  const col = columnOf(e);
  const next = (a: Json | undefined) => STAFF[(STAFF.indexOf(str(a)) + 1) % STAFF.length];
  const reassign: Action = { label: 'Reassign', verb: 'reassigned', patch: (x) => ({ assignee: next(x.fields.assignee) }) };
  const note: Action = { label: 'Note', verb: 'noted', patch: () => null };
  switch (col) {
    case 'dirty': return [{ label: 'Start', verb: 'started', patch: (x) => ({ hk: 'in_progress', assignee: str(x.fields.assignee) || me }) }, reassign, note];
    case 'in_progress': return [
      e.fields.hk === 'paused'
        ? { label: 'Resume', verb: 'resumed', patch: () => ({ hk: 'in_progress' }) }
        : { label: 'Pause', verb: 'paused', patch: () => ({ hk: 'paused' }) },
      { label: 'Complete', verb: 'completed', patch: () => ({ status: 'clean', hk: null }) }, reassign, note];
    case 'clean': return [{ label: 'Inspect', verb: 'inspected', patch: () => ({ status: 'inspected', inspected_by: me }) }, reassign, note];
    case 'inspected': return [{ label: 'Mark dirty', verb: 'marked_dirty', patch: () => ({ status: 'dirty', assignee: null }) }, note];
    default: return [];
  }
}

async function act(id: string, action: Action, patch: Fields): Promise<void> {
  const t0 = performance.now();
  try {
    const e = await db.patch('rooms', id, patch);
    rooms.set(id, e);
    renderRoom(id);
    const ms = performance.now() - t0;
    latencies.push({ action: action.label, ms });
    announce(`Room ${id} ${action.verb.replace('_', ' ')}${mode() === 'offline' ? ' (saved offline, will sync)' : ''}`);
    track(`frontend.housekeeping.task_${action.verb}`, { room: id, latency_ms: Math.round(ms) });
  } catch (err) {
    announce(`Room ${id}: ${(err as TideSyncError).code ?? ''} ${(err as Error).message}`);
  }
}

// ---------- rendering

function announce(text: string): void {
  const el = $('announce');
  el.textContent = '';
  requestAnimationFrame(() => { el.textContent = text; });
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...kids: (Node | string)[]): HTMLElementTagNameMap[K] {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  n.append(...kids);
  return n;
}

function buildBoard(): void {
  const cols = $('columns');
  cols.replaceChildren();
  for (const c of COLUMNS) {
    const ul = el('ul', { id: `col-${c.id}`, 'aria-labelledby': `colh-${c.id}` });
    cols.append(el('section', { class: 'column', 'data-column': c.id }, el('h3', { id: `colh-${c.id}` }, c.title, ' ', el('span', { class: 'count', id: `count-${c.id}` }, '')), ul));
  }
  for (const id of [...rooms.keys()].sort()) renderRoom(id);
  updateCounts();
}

function tileFor(e: LocalEntity): HTMLLIElement {
  const f = e.fields;
  const badges: Node[] = [];
  if (f.hk === 'paused') badges.push(el('span', { class: 'badge paused' }, 'paused'));
  if (e.pending > 0) badges.push(el('span', { class: 'badge pending', 'data-badge': 'pending' }, `pending ${e.pending}`));
  if (e.conflicted) badges.push(el('span', { class: 'badge conflict', 'data-badge': 'conflict' }, 'conflict'));
  const label = `Room ${e.id}, ${str(f.kind)}, ${f.hk === 'paused' ? 'paused' : columnOf(e)?.replace('_', ' ')}` +
    `${f.assignee ? `, assigned to ${str(f.assignee)}` : ''}${e.pending ? `, ${e.pending} pending` : ''}${e.conflicted ? ', in conflict' : ''}`;
  const actions = el('div', { class: 'actions' });
  for (const a of actionsFor(e)) {
    const b = el('button', { type: 'button', 'data-action': a.label.toLowerCase().replace(' ', '-'), 'aria-label': `${a.label} room ${e.id}` }, a.label);
    b.addEventListener('click', () => {
      const cur = rooms.get(e.id);
      if (!cur) return;
      if (a.label === 'Note') { openNote(cur); return; }
      const p = a.patch(cur);
      if (p) void act(e.id, a, p);
    });
    actions.append(b);
  }
  return el('li', { class: 'tile', id: `tile-${e.id}`, tabindex: '0', 'aria-label': label, 'data-room': e.id, 'data-pending': String(e.pending), 'data-conflicted': String(e.conflicted) },
    el('header', {}, el('span', { class: 'num' }, e.id), el('span', { class: 'meta' }, str(f.kind)), ...badges),
    el('div', { class: 'meta' }, f.assignee ? `Assignee: ${str(f.assignee)}` : 'Unassigned'),
    ...(f.note ? [el('div', { class: 'meta' }, `Note: ${str(f.note).slice(0, 60)}`)] : []),
    actions);
}

function renderRoom(id: string): void {
  const e = rooms.get(id);
  const old = document.getElementById(`tile-${id}`);
  const hadFocus = old?.contains(document.activeElement) ?? false;
  const col = e ? columnOf(e) : null;
  if (!e || e.deleted || !col) old?.remove();
  else {
    const tile = tileFor(e);
    const list = $(`col-${col}`);
    if (old && old.parentElement === list) old.replaceWith(tile);
    else {
      old?.remove();
      const after = [...list.children].find((c) => (c as HTMLElement).dataset.room! > id);
      list.insertBefore(tile, after ?? null);
    }
    if (hadFocus) tile.focus();
  }
  renderDeskRow(id);
  updateCounts();
}

function updateCounts(): void {
  for (const c of COLUMNS) {
    const n = document.getElementById(`col-${c.id}`)?.children.length ?? 0;
    const span = document.getElementById(`count-${c.id}`);
    if (span) span.textContent = `(${n})`;
  }
  renderPending();
}

function renderDeskRow(id: string): void {
  const body = $('desk-rows');
  const e = rooms.get(id);
  const old = document.getElementById(`desk-${id}`);
  if (!e || e.deleted) { old?.remove(); return; }
  const f = e.fields;
  const row = el('tr', { id: `desk-${id}`, 'data-room': id },
    el('th', { scope: 'row' }, id), el('td', {}, str(f.kind)), el('td', { 'data-field': 'status' }, str(f.status)),
    el('td', { 'data-field': 'hk' }, str(f.hk).replace('_', ' ')), el('td', {}, str(f.assignee)),
    el('td', {}, e.conflicted ? 'conflict' : e.pending ? `pending ${e.pending}` : 'synced'));
  if (old) old.replaceWith(row);
  else {
    const after = [...body.children].find((c) => (c as HTMLElement).dataset.room! > id);
    body.insertBefore(row, after ?? null);
  }
}

/** The user's own changes waiting to sync: everything but the app's telemetry. */
const work = (s: Status): number => s.pending - (s.pending_by_collection.telemetry ?? 0);

function renderPending(): void {
  const n = status ? work(status) : 0;
  const telemetry = status?.pending_by_collection.telemetry ?? 0;
  $('pending').textContent = `Pending: ${n}`;
  $('pending').dataset.pending = String(n);
  $('pending').setAttribute('aria-label', `${n} changes waiting to sync (${roomPending()} room updates; ${telemetry} usage events besides)`);
}

function pillText(s: Status): { phase: string; text: string } {
  const err = s.last_error ? `${s.last_error[0]}: ${s.last_error[1]}` : '';
  if (s.conflicts > 0) return { phase: 'conflict', text: `${s.conflicts} conflict${s.conflicts > 1 ? 's' : ''} – open Sync Center` };
  if (s.dead_letters > 0) return { phase: 'error', text: `${s.dead_letters} failed – open Sync Center` };
  if (s.held > 0) return { phase: 'conflict', text: `${s.held} held for review – open Sync Center` };
  switch (s.phase) {
    case 'offline': return { phase: 'offline', text: work(s) ? `Offline · ${work(s)} pending` : 'Offline' };
    case 'syncing': return { phase: 'syncing', text: `Syncing${work(s) ? ` · ${work(s)} pending` : ''}` };
    case 'error': return { phase: 'error', text: `Sync error · ${err || 'unknown'}` };
    default: return { phase: 'idle', text: work(s) ? `Pending ${work(s)}` : 'Synced' };
  }
}

let lastPill = '';
function renderStatus(s: Status): void {
  const prev = status;
  status = s;
  const { phase, text } = pillText(s);
  const pill = $('pill');
  pill.dataset.phase = phase;
  if (text !== lastPill) { pill.textContent = text; lastPill = text; }
  pill.title = s.last_error ? `${s.last_error[0]}: ${s.last_error[1]}` : '';
  renderPending();
  checkStale();
  // J-20 telemetry on transitions (never on telemetry-only flushes).
  if (prev) {
    if (s.phase === 'syncing' && prev.phase !== 'syncing' && roomPending() > 0) { flushing = { at: performance.now() }; track('frontend.sync.flush_started', { pending: work(s) }); }
    if (flushing && s.phase !== 'syncing') {
      track('frontend.sync.flush_completed', { okCount: Math.max(0, (work(prev) - work(s))), errorCount: s.dead_letters + s.conflicts, ms: Math.round(performance.now() - flushing.at) });
      flushing = null;
    }
    if (s.conflicts > prev.conflicts) track('frontend.sync.conflict', { entity: 'hk_task', count: s.conflicts });
    if (s.dead_letters > prev.dead_letters) track('frontend.sync.partial_failure', { count: s.dead_letters });
    if (s.phase === 'offline' && prev.phase !== 'offline' && view === 'board') track('frontend.housekeeping.offline_kanban_viewed');
  }
  if (view === 'sync') scheduleSyncCenter();
}
let flushing: { at: number } | null = null;

// ---------- stale primer

let staleShown = false;
function checkStale(): void {
  if (!status) return;
  const last = status.last_sync_at;
  const stale = status.stale || (last !== null && Date.now() - last > DAY_MS);
  const dlg = $<HTMLDialogElement>('stale-dialog');
  if (stale && !dlg.open) {
    dlg.showModal();
    if (!staleShown) track('frontend.housekeeping.primer_stale');
    staleShown = true;
  } else if (!stale && dlg.open) {
    dlg.close();
    staleShown = false;
    announce('Sync completed: offline data is current again');
  }
}
// The modal must show even when nothing changes (a tablet idle offline).
$<HTMLDialogElement>('stale-dialog').addEventListener('cancel', (ev) => ev.preventDefault());

// ---------- Sync Center

let syncTimer = 0;
let lastSyncSig = '';
const picks = new Map<string, 'mine' | 'theirs'>();
function scheduleSyncCenter(): void {
  clearTimeout(syncTimer);
  syncTimer = window.setTimeout(() => void renderSyncCenter(), 50);
}

function payloadText(p: Fields | undefined): string {
  const s = JSON.stringify(p ?? null);
  return s.length > 120 ? `${s.slice(0, 117)}…` : s;
}

async function renderSyncCenter(): Promise<void> {
  const [outbox, conflicts] = await Promise.all([db.outbox(), db.conflicts()]);
  // Re-render only on a change, so that focus and the picks stay put.
  const sig = JSON.stringify([outbox.map((o) => [o.seq, o.state, o.attempts, o.sent, o.last_error]), conflicts.map((c) => [c.key, c.detected_at, c.server?.version])]);
  if (sig === lastSyncSig) return;
  lastSyncSig = sig;
  // Conflicts
  const cbox = $('conflicts');
  cbox.replaceChildren(...(conflicts.length ? conflicts.map(conflictView) : [el('p', {}, 'No open conflicts.')]));
  // Dead letters
  const dead = outbox.filter((o) => o.state.state === 'dead_letter');
  $('dead').replaceChildren(dead.length ? outboxTable(dead, true, 'Dead letters') : el('p', {}, 'No dead letters.'));
  // Held for review: flagged by the on-device anomaly model (or held on
  // purpose); sent only once a person releases them.
  const held = outbox.filter((o) => o.state.state === 'held');
  $('held').replaceChildren(held.length ? heldTable(held) : el('p', {}, 'Nothing is held for review.'));
  const live = outbox.filter((o) => o.state.state === 'pending');
  $('outbox').replaceChildren(live.length ? outboxTable(live, false, 'Outbox') : el('p', {}, 'The outbox is empty: everything is synced.'));
}

function outboxTable(entries: OutboxEntry[], dead: boolean, caption: string): HTMLTableElement {
  const head = el('tr', {}, ...['#', 'Entity', 'Change', 'State', 'Attempts', 'Reason', ...(dead ? ['Actions'] : [])].map((h) => el('th', { scope: 'col' }, h)));
  const rows = entries.map((o) => {
    const m = o.mutation;
    const st = o.state.state === 'dead_letter' ? `dead letter (${o.state.code})` : o.sent ? 'sent, awaiting ack' : o.attempts ? 'retrying' : 'queued';
    const reason = o.state.state === 'dead_letter' ? o.state.message : o.last_error ? `${o.last_error[0]}: ${o.last_error[1]}` : m.offline ? 'made offline' : '';
    const cells: Node[] = [el('td', {}, String(o.seq)), el('th', { scope: 'row' }, `${m.collection}/${m.entity_id}`),
      el('td', {}, m.kind, ' ', el('code', { class: 'payload' }, payloadText(m.payload))), el('td', { 'data-field': 'state' }, st),
      el('td', {}, String(o.attempts)), el('td', { 'data-field': 'reason' }, reason)];
    if (dead) {
      const retry = el('button', { type: 'button', 'data-action': 'retry', 'aria-label': `Retry change ${o.seq} to ${m.entity_id}` }, 'Retry');
      retry.addEventListener('click', () => void db.retry(o.seq).then(afterSyncCenterAction('Retried')));
      const edit = el('button', { type: 'button', 'data-action': 'edit-retry', 'aria-label': `Edit and retry change ${o.seq} to ${m.entity_id}` }, 'Edit & retry');
      edit.addEventListener('click', () => openEdit(o));
      const discard = el('button', { type: 'button', 'data-action': 'discard', 'aria-label': `Discard change ${o.seq} to ${m.entity_id}` }, 'Discard');
      discard.addEventListener('click', () => void db.discard(o.seq).then(afterSyncCenterAction('Discarded')));
      cells.push(el('td', {}, retry, ' ', edit, ' ', discard));
    }
    return el('tr', { 'data-seq': String(o.seq), 'data-entity': m.entity_id, tabindex: '0' }, ...cells);
  });
  return el('table', { 'data-table': dead ? 'dead' : 'outbox' }, el('caption', { class: 'sr-only' }, caption), el('thead', {}, head), el('tbody', {}, ...rows));
}

function heldTable(entries: OutboxEntry[]): HTMLTableElement {
  const head = el('tr', {}, ...['#', 'Entity', 'Change', 'Why', 'Score', 'Actions'].map((h) => el('th', { scope: 'col' }, h)));
  const rows = entries.map((o) => {
    const m = o.mutation;
    const why = o.state.state === 'held' && o.state.reason === 'flagged' ? 'unusual for this room' : 'held on request';
    const score = m.anomaly ? `${m.anomaly.score.toFixed(2)}${m.anomaly.flagged ? ' (flagged)' : ''}` : '–';
    const release = el('button', { type: 'button', 'data-action': 'release', 'aria-label': `Send change ${o.seq} to ${m.entity_id}` }, 'Send');
    release.addEventListener('click', () => void db.release(o.seq).then(afterSyncCenterAction('Released')));
    const discard = el('button', { type: 'button', 'data-action': 'discard', 'aria-label': `Discard change ${o.seq} to ${m.entity_id}` }, 'Discard');
    discard.addEventListener('click', () => void db.discard(o.seq).then(afterSyncCenterAction('Discarded')));
    return el('tr', { 'data-seq': String(o.seq), 'data-entity': m.entity_id, tabindex: '0' },
      el('td', {}, String(o.seq)), el('th', { scope: 'row' }, `${m.collection}/${m.entity_id}`),
      el('td', {}, m.kind, ' ', el('code', { class: 'payload' }, payloadText(m.payload))), el('td', { 'data-field': 'why' }, why),
      el('td', { 'data-field': 'score' }, score), el('td', {}, release, ' ', discard));
  });
  return el('table', { 'data-table': 'held' }, el('caption', { class: 'sr-only' }, 'Held for review'), el('thead', {}, head), el('tbody', {}, ...rows));
}

function afterSyncCenterAction(what: string): () => void {
  return () => { announce(`${what}`); scheduleSyncCenter(); void db.syncNow().catch(() => undefined); };
}

function conflictView(c: ConflictRecord): HTMLElement {
  const id = c.key.id;
  const base = c.base?.fields ?? {}, mine = c.local?.fields ?? {}, theirs = c.server?.fields ?? {};
  const names = [...new Set([...Object.keys(base), ...Object.keys(mine), ...Object.keys(theirs)])].sort();
  const differing = new Set(c.fields.length ? c.fields : names.filter((n) => str(mine[n]) !== str(theirs[n])));
  const rows = names.map((n) => {
    const d = differing.has(n);
    const choice = d
      ? el('td', {}, ...(['mine', 'theirs'] as const).map((w) => {
        const input = el('input', { type: 'radio', name: `pick-${id}-${n}`, value: w, 'data-field': n, id: `pick-${id}-${n}-${w}`, ...((picks.get(`${id}\0${n}`) ?? 'mine') === w ? { checked: '' } : {}) });
        input.addEventListener('change', () => { if (input.checked) picks.set(`${id}\0${n}`, w); });
        return el('span', {}, input, el('label', { for: `pick-${id}-${n}-${w}` }, w === 'mine' ? ' Mine ' : ' Theirs '));
      }))
      : el('td', {}, 'same');
    return el('tr', { 'data-field': n, ...(d ? { 'data-conflict': 'true' } : {}) }, el('th', { scope: 'row' }, n, d ? el('span', { class: 'sr-only' }, ' (differs)') : ''),
      el('td', {}, str(base[n])), el('td', { class: d ? 'differs' : '' }, str(mine[n])), el('td', { class: d ? 'differs' : '' }, str(theirs[n])), choice);
  });
  const table = el('table', { class: 'diff', 'data-conflict': id },
    el('caption', {}, `Room ${id}: ${differing.size} field${differing.size === 1 ? '' : 's'} changed here and on the server (${[...differing].join(', ')})`),
    el('thead', {}, el('tr', {}, ...['Field', 'Base', 'Mine', 'Theirs', 'Keep'].map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, ...rows));
  const resolve = async (r: Parameters<TideSync['resolve']>[2], what: string) => {
    await db.resolve('rooms', id, r);
    track('frontend.sync.conflict_resolved', { entity: 'hk_task', room: id, choice: what });
    afterSyncCenterAction(`Conflict on room ${id} resolved (${what})`)();
  };
  const bMine = el('button', { type: 'button', 'data-action': 'keep-mine' }, 'Keep mine');
  bMine.addEventListener('click', () => void resolve({ choice: 'local' }, 'mine'));
  const bTheirs = el('button', { type: 'button', 'data-action': 'take-theirs' }, 'Take theirs');
  bTheirs.addEventListener('click', () => void resolve({ choice: 'server' }, 'theirs'));
  const bPick = el('button', { type: 'button', 'data-action': 'resolve-picked' }, 'Resolve with the picks');
  bPick.addEventListener('click', () => {
    // Fields changed on one side only keep that side's value (three-way);
    // the conflicting ones take the pick.
    const fields: Fields = {};
    for (const n of names) {
      const v = c.base && str(mine[n]) === str(base[n]) ? theirs[n] : mine[n];
      if (v !== undefined && v !== null) fields[n] = v;
    }
    for (const n of differing) {
      const pick = [...table.querySelectorAll<HTMLInputElement>('input[type="radio"]')].find((i) => i.checked && i.dataset.field === n)?.value;
      const v = pick === 'theirs' ? theirs[n] : mine[n];
      if (v === undefined) delete fields[n]; else fields[n] = v;
    }
    void resolve({ choice: 'edited', fields }, 'edited');
  });
  return el('section', { class: 'conflict', 'aria-label': `Conflict on room ${id}` }, table, el('p', {}, bMine, ' ', bTheirs, ' ', bPick));
}

function openEdit(o: OutboxEntry): void {
  const dlg = $<HTMLDialogElement>('edit-dialog');
  const text = $<HTMLTextAreaElement>('edit-text');
  text.value = JSON.stringify(o.mutation.payload ?? null, null, 2);
  $('edit-error').textContent = '';
  dlg.onclose = () => {
    if (dlg.returnValue !== 'retry') return;
    let payload: Fields | null;
    try { payload = JSON.parse(text.value) as Fields | null; } catch (e) { $('edit-error').textContent = `Not JSON: ${(e as Error).message}`; dlg.showModal(); return; }
    void db.retry(o.seq, payload).then(afterSyncCenterAction('Edited and retried'), (e: TideSyncError) => { $('edit-error').textContent = `${e.code}: ${e.message}`; dlg.showModal(); });
  };
  dlg.returnValue = '';
  dlg.showModal();
}

function openNote(e: LocalEntity): void {
  const dlg = $<HTMLDialogElement>('note-dialog');
  $('note-room').textContent = e.id;
  const text = $<HTMLTextAreaElement>('note-text');
  text.value = str(e.fields.note);
  dlg.onclose = () => {
    if (dlg.returnValue === 'save') void act(e.id, { label: 'Note', verb: 'noted', patch: () => null }, { note: text.value || null });
  };
  dlg.returnValue = '';
  dlg.showModal();
}

// ---------- views and keyboard

function show(v: typeof view): void {
  view = v;
  for (const id of ['board', 'desk', 'sync'] as const) $(id).hidden = id !== v;
  for (const b of document.querySelectorAll<HTMLButtonElement>('nav button')) {
    if (b.dataset.view === v) b.setAttribute('aria-current', 'page'); else b.removeAttribute('aria-current');
  }
  if (v === 'sync') { lastSyncSig = ''; void renderSyncCenter(); $('sync-h').focus(); }
  if (v === 'board' && mode() === 'offline') track('frontend.housekeeping.offline_kanban_viewed');
}
for (const b of document.querySelectorAll<HTMLButtonElement>('nav button')) b.addEventListener('click', () => show(b.dataset.view as typeof view));
document.addEventListener('keydown', (ev) => {
  if (ev.altKey && (ev.key === 's' || ev.key === 'S' || ev.code === 'KeyS')) { ev.preventDefault(); show('sync'); }
});
$('sync-now').addEventListener('click', () => {
  $('sync-busy').textContent = 'Syncing…';
  db.syncNow().then((r) => { $('sync-busy').textContent = `Sent ${r.sent}, acknowledged ${r.acknowledged}, pulled ${r.pulled}${r.error ? `, error ${r.error}` : ''}`; scheduleSyncCenter(); },
    (e: TideSyncError) => { $('sync-busy').textContent = `${e.code}: ${e.message}`; });
});

// ---------- start

async function loadRooms(): Promise<void> {
  let after: string | undefined;
  for (;;) {
    const page = await db.query('rooms', { after, limit: 500 });
    for (const e of page) rooms.set(e.id, e);
    if (page.length < 500) break;
    after = page[page.length - 1].id;
  }
}

/** One database per browser profile: a tablet is one terminal. */
const DB_NAME = 'tidesync-housekeeping';

async function start(): Promise<void> {
  let link: PairingLink | null = null;
  try {
    link = pairingFromHash(location.hash);
  } catch (e) {
    $('pair-error').textContent = `Pairing failed: ${(e as Error).message}`;
  }
  await init({ module_or_path: new URL('../dist/tidesync_bg.wasm', import.meta.url) });
  const open = (withLink: PairingLink | null) => TideSync.open<Housekeeping>({
    dbName: DB_NAME, key: { webCrypto: true }, serverUrl: '',
    ...(withLink?.code ? { pairingCode: withLink.code } : {}),
    ...(withLink?.apiKey ? { apiKey: withLink.apiKey } : {}),
    ...(withLink?.terminal ? { terminalId: withLink.terminal } : {}),
    ...(withLink?.branch ? { branchId: withLink.branch } : {}),
    policies: { rooms: 'merge-three-way', telemetry: 'append-only' },
    // A room write the on-device model flags waits in the Sync Center for a
    // person (enableAnomalyModel).
    review: { rooms: 'hold_flagged' },
    pullIntervalMs: Number(params.get('pull') ?? 5000),
  });
  try {
    // With a link: pairing (the code is redeemed for the key, which says
    // which terminal this is; the store keeps the key). Without: the store
    // knows its terminal and key.
    try {
      db = await open(link);
    } catch (e) {
      // This device's own spent link (from the history, say): a paired
      // device opens as it is.
      if (!(link?.code && (e as TideSyncError).code === 'SYNC_UNAUTHORIZED')) throw e;
      try { db = await open(null); } catch { throw e; }
    }
    // Only now: a pairing that failed offline keeps its link for a retry.
    if (location.hash) history.replaceState(null, '', location.pathname + location.search);
  } catch (e) {
    const err = e as TideSyncError;
    $('pairing').hidden = false;
    if (err.code === 'NOT_PAIRED') {
      $('pill').textContent = 'Not paired';
    } else {
      $('pill').textContent = 'Cannot open';
      $('pair-error').textContent = err.code === 'TERMINAL_MISMATCH'
        ? `This device is already paired as another terminal: ${err.message}`
        : err.code === 'SYNC_UNAUTHORIZED' && link?.code
          ? 'This pairing link was used already or has expired: ask for a new one (bash scripts/serve.sh prints fresh links).'
          : `Cannot open the local store: ${err.code}: ${err.message}`;
    }
    return;
  }
  if (link?.staff) await saveStaff(link.staff);
  const identity = db.identity();
  me = (await loadStaff()) ?? STAFF[0];
  $('who').textContent = `${identity.terminal_id} · ${identity.branch_id}`;
  telemetryOn = params.get('telemetry') !== '0';
  await loadRooms();
  buildBoard();
  // The latest event per room: a read started for an older event does not
  // overwrite what a newer one delivered.
  const seen = new Map<string, number>();
  let eventNo = 0;
  db.subscribe({ collection: 'rooms' }, (ev: SyncEvent) => {
    if (ev.type === 'changed') {
      seen.set(ev.key.id, ++eventNo);
      if (ev.entity && !ev.entity.deleted) rooms.set(ev.key.id, ev.entity); else rooms.delete(ev.key.id);
      renderRoom(ev.key.id);
    } else if (ev.type === 'changes') {
      // A pulled page: the ids only; read each one.
      for (const id of ev.ids) {
        const n = ++eventNo;
        seen.set(id, n);
        void db.get('rooms', id).then((e: LocalEntity | null) => {
          if (seen.get(id) !== n) return;
          if (e) rooms.set(id, e); else rooms.delete(id);
          renderRoom(id);
        });
      }
    }
  });
  db.onStatus((s: Status) => renderStatus(s));
  setInterval(checkStale, 60_000);
  show(params.get('view') === 'desk' ? 'desk' : params.get('view') === 'sync' ? 'sync' : 'board');
  if (rooms.size === 0 && mode() === 'online') {
    // A fresh device: the board fills in as the first snapshot arrives.
    void db.waitForFirstSync().then(async () => { await loadRooms(); buildBoard(); });
  }
  track('frontend.housekeeping.kanban_viewed');
  win.hk = { db, latencies, ready: true, identity, staff: me };
  void enableAnomalyModel();
}

/** The SHA-256 of the one model this app runs (models/anomaly.onnx): the
 *  allow list. build.mjs copies the model, its features file and the tract
 *  .wasm beside the bundle; the service worker caches them as it fetches
 *  them, so the model scores offline too. */
const MODEL_SHA256 = 'cf7664480d9646edd2247a96ebe8ad6db0ef71091445fac26356bec8d0b2669f';

/** Loads the on-device anomaly model (tract, its own .wasm, imported only
 *  here) and scores this device's writes with it. Without it (an old
 *  browser, a model that fails its check) the app works unscored. */
async function enableAnomalyModel(): Promise<void> {
  const hk = win.hk!;
  try {
    const { loadModel } = await import('../../../pkg/inference.js');
    const file = (name: string) => fetch(new URL(`../dist/${name}`, import.meta.url));
    const [model, features] = await Promise.all([
      file('anomaly.onnx').then(async (r) => new Uint8Array(await r.arrayBuffer())),
      file('anomaly.features.json').then((r) => r.text()),
    ]);
    const scorer = await loadModel({ model, features, sha256: [MODEL_SHA256],
      wasm: new URL('../dist/tidesync_inference_bg.wasm', import.meta.url) });
    db.setScorer(scorer);
    hk.model = { id: scorer.model };
  } catch (e) {
    const code = (e as TideSyncError).code ?? 'UNAVAILABLE';
    hk.model = { error: code };
    console.warn(`the anomaly model is off: ${code}`);
  }
}

if ('serviceWorker' in navigator && params.get('sw') !== '0') {
  navigator.serviceWorker.register(new URL('../sw.js', import.meta.url), { scope: './' }).catch(() => undefined);
}
void start();
