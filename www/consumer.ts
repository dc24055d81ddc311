// A small TypeScript consumer of the package in pkg/, type-checked with
// `tsc --noEmit` by scripts/test-web.sh: it fails if the generated types
// drift from how an app uses them, or if they loosen to `any`.
import init, {
  TideSync,
  type AuditEntry,
  type ConflictRecord,
  type LocalEntity,
  type OpenOptions,
  type OutboxEntry,
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
