// The Vue composables of the installed tarball (`tidesync/vue`): a
// component lists rooms from useQuery (its query a getter of a ref) and the
// sync pill from useStatus, follows writes through db.create and db.patch,
// subscribes again when the limit changes, and releases everything when the
// app unmounts; in an effectScope, a database ref that starts null, and the
// scope's stop. The database's live() and onStatus() are wrapped to count
// what is open.
import init, { TideSync, type LocalEntity, type Status, type TideSyncError } from 'tidesync';
import { useQuery, useStatus } from 'tidesync/vue';
import wasmUrl from 'tidesync/tidesync_bg.wasm';
import { createApp, defineComponent, effectScope, h, nextTick, ref, shallowRef, type ShallowRef } from 'vue';

type Hotel = { rooms: { status: 'clean' | 'dirty'; floor?: number }; sales: { total: number } };

export interface Result {
  /** The page's text at each step. */
  seen: { [step: string]: string };
  /** Subscriptions open at each step: live queries, status listeners. */
  open: { [step: string]: [number, number] };
  /** In the effect scope: [loading, rows, status phase or null] before and after the ref gets the database. */
  scope: { before: [boolean, number, string | null]; after: [boolean, number, string | null] };
  /** Live results delivered after the unmount and the scope's stop. */
  lateDeliveries: number;
}

// Compile-time checks only (never run).
export function typeChecks(db: TideSync<Hotel>): void {
  // @ts-expect-error a collection the schema does not declare
  useQuery(db, { collection: 'room' });
  const sales = useQuery(shallowRef(db), () => ({ collection: 'sales', limit: 10 }));
  // @ts-expect-error a sale's total is a number
  const total: string = sales.rows.value[0].fields.total;
  // @ts-expect-error the refs are read-only
  sales.loading.value = false;
  const error: TideSyncError | null = sales.error.value;
  const status: Readonly<ShallowRef<Status | null>> = useStatus(() => db);
  void [total, error, status];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, test: () => boolean): Promise<void> {
  for (const t0 = Date.now(); !test(); await sleep(10)) {
    if (Date.now() - t0 > 10000) throw new Error(`timed out waiting for ${what}: ${document.body.innerText}`);
  }
}

async function run(): Promise<Result> {
  await init({ module_or_path: wasmUrl });
  const db = await TideSync.open<Hotel>({
    dbName: 'package-test-vue', key: { plaintext: true }, serverUrl: '', apiKey: 'ts_offline',
    terminalId: 'desk-1', branchId: 'lisbon', autoSync: false,
  });
  let lives = 0, statuses = 0, deliveries = 0;
  const live = db.live.bind(db);
  db.live = ((query, callback, onError) => {
    const stop = live(query, (rows) => { deliveries++; callback(rows); }, onError); // throws on a bad query
    lives++;
    return () => { lives--; stop(); };
  }) as typeof db.live;
  const onStatus = db.onStatus.bind(db);
  db.onStatus = (callback) => {
    statuses++;
    const stop = onStatus(callback);
    return () => { statuses--; stop(); };
  };

  await db.create('rooms', { status: 'dirty', floor: 12 }, 'r-1');
  const el = document.body.appendChild(document.createElement('div'));
  const text = () => el.innerText.replace(/\s+/g, ' ').trim();
  const items = () => el.querySelectorAll('li').length;
  const seen: Result['seen'] = {};
  const open: Result['open'] = {};
  const mark = (step: string) => { seen[step] = text(); open[step] = [lives, statuses]; };

  const limit = ref<number | undefined>(undefined);
  const Rooms = defineComponent({
    setup() {
      const { rows, error, loading } = useQuery(db, () => ({ collection: 'rooms', limit: limit.value }));
      const status = useStatus(db);
      return () => {
        const list: readonly LocalEntity<Hotel['rooms'], 'rooms'>[] = rows.value; // typed by the schema
        const s = status.value;
        return h('main', [
          h('p', s ? `${s.phase}, ${s.pending} pending` : 'no status yet'),
          h('p', loading.value ? 'loading' : error.value ? error.value.code : `first ${list[0]?.fields.status ?? 'none'}`),
          h('ul', list.map((r) => h('li', { key: r.id }, `${r.id} ${r.fields.status}`))),
        ]);
      };
    },
  });
  const app = createApp(Rooms);
  app.mount(el);
  await until('the first rows', () => text().includes('r-1 dirty') && text().includes('1 pending'));
  mark('mounted');
  await db.create('rooms', { status: 'clean' }, 'r-2');
  await until('the created room', () => items() === 2 && text().includes('2 pending'));
  mark('created');
  await db.patch('rooms', 'r-1', { status: 'clean' });
  await until('the patched room', () => text().includes('r-1 clean'));
  mark('patched');
  limit.value = 0;
  await until('the refused query', () => text().includes('BAD_ARGUMENT'));
  mark('limit 0');
  limit.value = 1;
  await until('the page of one', () => items() === 1);
  mark('limit 1');
  app.unmount();
  mark('unmounted');

  // An effect scope, the database a ref that starts null.
  const current = shallowRef<TideSync<Hotel> | null>(null);
  const scope = effectScope();
  const q = scope.run(() => ({ page: useQuery(current, { collection: 'rooms', after: 'r-1' }), status: useStatus(current) }))!;
  const state = (): [boolean, number, string | null] => [q.page.loading.value, q.page.rows.value.length, q.status.value?.phase ?? null];
  await sleep(50);
  const before = state();
  current.value = db;
  await nextTick();
  await until('the scope\'s rows', () => !q.page.loading.value && q.status.value !== null);
  const after = state();
  mark('scope');
  scope.stop();
  mark('scope stopped');

  const delivered = deliveries;
  await db.patch('rooms', 'r-1', { status: 'dirty' }); // shown by the component's last page
  await db.patch('rooms', 'r-2', { status: 'dirty' }); // shown by the scope's page
  await sleep(300);
  const lateDeliveries = deliveries - delivered;
  db.close();
  return { seen, open, scope: { before, after }, lateDeliveries };
}

run().then((result) => { Object.assign(window, { result }); },
  (e: unknown) => { Object.assign(window, { failure: String((e as Error)?.stack ?? e) }); });
