// A small TypeScript consumer of the package in pkg/, type-checked with
// `tsc --noEmit` by scripts/test-web.sh: it fails if the generated types
// drift from how an app uses them, or if they loosen to `any`.
import init, {
  TideSync,
  type AuditEntry,
  type ConflictOf,
  type ConflictRecord,
  type LocalEntity,
  type OpenOptions,
  type OutboxEntry,
  type Rules,
  type SchemaOf,
  type Status,
  type SyncEvent,
  type SyncReport,
  type TideSyncError,
} from '../pkg/tidesync.js';

export async function housekeeping(hostKey: Uint8Array): Promise<number> {
  await init();
  const options: OpenOptions = {
    dbName: 'hotel',
    key: { hostKey },
    serverUrl: 'https://sync.example.invalid',
    apiKey: 'ts_key',
    terminalId: 'desk-1',
    branchId: 'lisbon',
    policies: { rooms: 'merge-three-way', sales: 'append-only', catalog: 'server-wins' },
  };
  const db: TideSync = await TideSync.open(options);

  const room: LocalEntity = await db.create('rooms', { status: 'dirty', floor: 12, tags: ['vip'] }, 'r-1204');
  const cleaned: LocalEntity = await db.patch('rooms', room.id, { status: 'clean', note: null });
  const maybe: LocalEntity | null = await db.get('rooms', 'r-1204');
  const all: LocalEntity[] = await db.query('rooms');
  const next: LocalEntity[] = await db.query('rooms', { after: all[all.length - 1]?.id, limit: 50 });
  await db.append('sales', { total: 42.5, items: [{ sku: 'A1', qty: 2 }] });

  const unsubscribe: () => void = db.subscribe({ collection: 'rooms' }, (event: SyncEvent) => {
    switch (event.type) {
      case 'changed': {
        const id: string = event.key.id;
        const deleted: boolean = event.entity?.deleted ?? true;
        void id; void deleted;
        break;
      }
      case 'status': {
        const pending: number = event.status.pending;
        void pending;
        break;
      }
      case 'alert': {
        const code: string = event.code;
        void code;
        break;
      }
    }
  });
  const stopStatus = db.onStatus((s: Status) => {
    if (s.phase === 'offline' && s.last_error) {
      const [code, message] = s.last_error;
      void code; void message;
    }
  });

  const letters: OutboxEntry[] = await db.deadLetters();
  if (letters.length > 0) await db.retry(letters[0].seq, { status: 'clean' }); // edit and retry
  const retried: number = await db.retryAll();
  void retried;
  const audit: AuditEntry[] = await db.audit({ after: 0, limit: 50 });
  if (audit[0]?.event.event === 'replaced_by') void audit[0].event.op_id;
  const firstSync: Status = await db.waitForFirstSync();
  const done: boolean = firstSync.first_sync_done;
  void done;

  try {
    const report: SyncReport = await db.syncNow();
    void report.acknowledged;
  } catch (e) {
    const err = e as TideSyncError;
    if (err.code === 'SYNC_UNAUTHORIZED' || err.code === 'STORE_GONE') throw err;
  }

  const dead: OutboxEntry[] = await db.deadLetters();
  for (const d of dead) {
    if (d.state.state === 'dead_letter') await db.retry(d.seq);
  }
  const conflicts: ConflictRecord[] = await db.conflicts();
  for (const c of conflicts) {
    await db.resolve(c.key.collection, c.key.id, { choice: 'edited', fields: { status: 'inspect' } });
  }

  // The types are precise: each line below must be a type error.
  // @ts-expect-error fields are JSON, a Date is not
  await db.create('rooms', { at: new Date() });
  // @ts-expect-error a collection is a string
  await db.query(42);
  // @ts-expect-error unknown conflict policy
  const bad: OpenOptions = { ...options, policies: { rooms: 'first-write-wins' } };
  void bad;
  // @ts-expect-error an entity has no `version` (it is `server_version`)
  void cleaned.version;

  unsubscribe();
  stopStatus();
  db.close();
  return all.length + (maybe ? 1 : 0);
}

// The same calls typed by a declared schema (TideSync.open<Hotel>): collection
// names, field names and field types are checked, results are typed.
type Hotel = {
  rooms: { number: string; status: 'clean' | 'dirty'; floor?: number; note?: string; tags?: string[] };
  sales: { total: number; items: { sku: string; qty: number }[] };
};

export async function typedHotel(options: OpenOptions<Hotel>): Promise<string> {
  const db: TideSync<Hotel> = await TideSync.open<Hotel>(options);
  const room = await db.create('rooms', { number: '1204', status: 'dirty', floor: 12 }, 'r-1204');
  const status: 'clean' | 'dirty' = room.fields.status;
  const collection: 'rooms' = room.collection;
  const floor: number | undefined = room.fields.floor;
  const cleaned: LocalEntity<Hotel['rooms'], 'rooms'> = await db.patch('rooms', room.id, { status: 'clean', note: null });
  const got = await db.get('rooms', 'r-1204');
  const number: string | undefined = got?.fields.number;
  const rooms = await db.query('rooms', { limit: 10 });
  const dirty: number = rooms.filter((r) => r.fields.status === 'dirty').length;
  const sale = await db.append('sales', { total: 42.5, items: [{ sku: 'A1', qty: 2 }] });
  const qty: number = sale.fields.items[0].qty;
  const gone = await db.delete('rooms', 'r-1204');
  const left: 'clean' | 'dirty' | undefined = gone.fields.status; // a deleted entity has no fields
  await db.reconcile(['rooms', 'sales']);

  const offLive: () => void = db.live({ collection: 'rooms', limit: 50 }, (rows) => {
    const s: 'clean' | 'dirty' = rows[0].fields.status;
    void s;
  }, (e) => { const code: string = e.code; void code; });
  offLive();
  // @ts-expect-error a live query of a collection the schema does not have
  db.live({ collection: 'room' }, () => {});
  // @ts-expect-error live rows are typed by the collection
  db.live({ collection: 'sales' }, (rows) => { const s: 'clean' = rows[0].fields.status; void s; });
  const off = db.subscribe({ collection: 'rooms' }, (e) => {
    if (e.type === 'changed' && e.entity) {
      const s: 'clean' | 'dirty' | undefined = e.entity.fields.status;
      const c: 'rooms' = e.key.collection;
      void s; void c;
    }
    if (e.type === 'changes') {
      const c: 'rooms' = e.collection;
      void c;
    }
  });
  const offAll = db.subscribe({}, (e: SyncEvent<Hotel>) => {
    if (e.type === 'changed') {
      const c: 'rooms' | 'sales' = e.key.collection;
      void c;
    }
  });
  // A conflict's collection is nested (key.collection), which TypeScript
  // does not narrow on: a type guard gives the collection's fields.
  const inRooms = (c: ConflictRecord<Hotel>): c is ConflictOf<Hotel['rooms'], 'rooms'> => c.key.collection === 'rooms';
  for (const c of await db.conflicts()) {
    if (inRooms(c)) {
      const mine: 'clean' | 'dirty' | undefined = c.local?.fields.status;
      await db.resolve('rooms', c.key.id, { choice: 'edited', fields: { number: '1204', status: mine ?? 'dirty' } });
    }
  }
  const plain: TideSync = db; // a typed database is still a TideSync
  const untyped: ConflictRecord[] = await plain.conflicts();
  void untyped;

  // Each line below must be a type error.
  // @ts-expect-error a collection-name typo
  await db.create('room', { number: '1', status: 'clean' });
  // @ts-expect-error a field-name typo in create
  await db.create('rooms', { number: '1', stauts: 'clean' });
  // @ts-expect-error a required field missing in create
  await db.create('rooms', { number: '1' });
  // @ts-expect-error a wrong field type (floor is a number)
  await db.create('rooms', { number: '1', status: 'clean', floor: '12' });
  // @ts-expect-error a value outside the declared union
  await db.patch('rooms', 'r-1', { status: 'inspect' });
  // @ts-expect-error null removes a field: a required one cannot be removed
  await db.patch('rooms', 'r-1', { status: null });
  // @ts-expect-error a field-name typo in patch
  await db.patch('rooms', 'r-1', { stauts: 'clean' });
  // @ts-expect-error a collection-name typo in get
  await db.get('sale', 's-1');
  // @ts-expect-error a collection-name typo in query
  await db.query('Rooms');
  // @ts-expect-error a collection-name typo in delete
  await db.delete('roms', 'r-1');
  // @ts-expect-error a collection-name typo in reconcile
  await db.reconcile(['rooms', 'sale']);
  // @ts-expect-error edited fields are the collection's
  await db.resolve('rooms', 'r-1', { choice: 'edited', fields: { status: 'clean', number: 1 } });
  // @ts-expect-error a subscription to a collection not in the schema
  db.subscribe({ collection: 'guests' }, () => {});
  // @ts-expect-error an id needs a collection
  db.subscribe({ id: 'r-1' }, () => {});
  // @ts-expect-error a policy for a collection not in the schema
  const badPolicy: OpenOptions<Hotel> = { ...options, policies: { room: 'last-write-wins' } };
  void badPolicy;
  // @ts-expect-error the fields of a typed result: no such field
  void room.fields.stauts;
  // @ts-expect-error a deleted entity's field may be absent
  const sure: 'clean' | 'dirty' = gone.fields.status;
  void sure;

  off(); offAll();
  db.close();
  return [status, collection, floor, cleaned.id, number, dirty, qty, left].join();
}

// A schema whose field values are not JSON does not open.
type Diary = { entries: { at: Date } };
// @ts-expect-error a Date field is not JSON
export const notJson = (o: OpenOptions) => TideSync.open<Diary>(o);

// A schema derived from the server's rules file (declared `as const`).
const rules = {
  rooms: {
    fields: {
      number: { type: 'string', required: true, max_len: 8 },
      status: { enum: ['clean', 'dirty'], required: true },
      floor: { type: 'integer', min: 0 },
      note: { type: 'string', enum: [] }, // an empty enum allows any value
    },
    additional_fields: false,
  },
  sales: { fields: { total: { type: 'number', required: true } }, access: 'append_only' },
} as const satisfies Rules;
type RuledHotel = SchemaOf<typeof rules>;

export async function ruled(options: OpenOptions): Promise<number> {
  const db = await TideSync.open<RuledHotel>({
    ...options, rules, maxUploadBytesPerSec: 64_000, retry: { baseMs: 250, capMs: 60_000, offlineProbeMs: 5_000 },
  });
  // @ts-expect-error retry takes baseMs, capMs and offlineProbeMs
  await TideSync.open({ ...options, retry: { base: 250 } });
  const room = await db.create('rooms', { number: '12', status: 'clean', floor: 1 });
  const status: 'clean' | 'dirty' = room.fields.status;
  const floor: number | undefined = room.fields.floor;
  const note: string | undefined = room.fields.note;
  void note;
  const sale = await db.append('sales', { total: 3, till: 'T1' }); // additional fields allowed
  const total: number = sale.fields.total;
  // @ts-expect-error required by the rules
  await db.create('rooms', { number: '12' });
  // @ts-expect-error outside the enum
  await db.create('rooms', { number: '12', status: 'inspect' });
  // @ts-expect-error a string where the rules say integer
  await db.create('rooms', { number: '12', status: 'clean', floor: '1' });
  // @ts-expect-error an unknown field where additional_fields is false
  await db.create('rooms', { number: '12', status: 'clean', wing: 'east' });
  // @ts-expect-error a collection the rules do not name
  await db.create('guests', { name: 'x' });
  // @ts-expect-error a rules file with an unknown access mode
  const badRules: Rules = { rooms: { access: 'write_only' } };
  void badRules;
  db.close();
  return status.length + (floor ?? 0) + total;
}
