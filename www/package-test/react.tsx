// The React hooks of the installed tarball (`tidesync/react`), in a
// development build of React under StrictMode (effects mount, unmount and
// mount again): a list of rooms from useQuery and the sync pill from
// useStatus follow writes through db.create and db.patch, a new limit
// subscribes again, a null database releases the subscriptions (and shows
// loading), and unmounting releases every subscription. The
// database's live() and onStatus() are wrapped to count what is open.
import init, { TideSync, type LiveQuery, type LocalEntity, type Status } from 'tidesync';
import { useQuery, useStatus, type QueryState } from 'tidesync/react';
import wasmUrl from 'tidesync/tidesync_bg.wasm';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';

type Hotel = { rooms: { status: 'clean' | 'dirty'; floor?: number }; sales: { total: number } };

export interface Result {
  /** The page's text at each step. */
  seen: { [step: string]: string };
  /** Subscriptions open at each step: live queries, status listeners. */
  open: { [step: string]: [number, number] };
  /** live() calls in all (StrictMode's test mount adds one), refused ones too. */
  subscribed: number;
  /** Live results delivered after the unmount. */
  lateDeliveries: number;
}

function Rooms({ db, limit }: { db: TideSync<Hotel> | null; limit?: number }) {
  const { rows, error, loading }: QueryState<LocalEntity<Hotel['rooms'], 'rooms'>> = useQuery(db, { collection: 'rooms', limit });
  const status: Status | null = useStatus(db);
  const first: 'clean' | 'dirty' | undefined = rows[0]?.fields.status; // typed by the schema
  return (
    <main>
      <p id="pill">{status ? `${status.phase}, ${status.pending} pending` : 'no status yet'}</p>
      <p id="state">{loading ? 'loading' : error ? error.code : `first ${first ?? 'none'}`}</p>
      <ul>{rows.map((r) => <li key={r.id}>{r.id} {r.fields.status}</li>)}</ul>
    </main>
  );
}

// Compile-time checks only (never rendered).
export function TypeChecks({ db }: { db: TideSync<Hotel> }) {
  // @ts-expect-error a collection the schema does not declare
  useQuery(db, { collection: 'room' });
  const sales = useQuery(db, { collection: 'sales', after: 's-1' });
  // @ts-expect-error a sale's total is a number
  const total: string = sales.rows[0].fields.total;
  const untyped = useQuery(null as TideSync | null, { collection: 'anything' }); // untyped: any collection
  const query: LiveQuery<'rooms'> = { collection: 'rooms', limit: 5 };
  return <p>{total}{untyped.rows.length}{useQuery(db, query).rows.length}{useStatus(null)?.phase}</p>;
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
    dbName: 'package-test-react', key: { plaintext: true }, serverUrl: '', apiKey: 'ts_offline',
    terminalId: 'desk-1', branchId: 'lisbon', autoSync: false,
  });
  let lives = 0, statuses = 0, subscribed = 0, deliveries = 0;
  const live = db.live.bind(db);
  db.live = ((query, callback, onError) => {
    subscribed++;
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

  const root = createRoot(el);
  root.render(<StrictMode><Rooms db={db} /></StrictMode>);
  await until('the first rows', () => text().includes('r-1 dirty') && text().includes('1 pending'));
  mark('mounted');
  await db.create('rooms', { status: 'clean' }, 'r-2');
  await until('the created room', () => items() === 2 && text().includes('2 pending'));
  mark('created');
  await db.patch('rooms', 'r-1', { status: 'clean' });
  await until('the patched room', () => text().includes('r-1 clean'));
  mark('patched');
  root.render(<StrictMode><Rooms db={db} limit={0} /></StrictMode>);
  await until('the refused query', () => text().includes('BAD_ARGUMENT'));
  mark('limit 0');
  root.render(<StrictMode><Rooms db={db} limit={1} /></StrictMode>);
  await until('the page of one', () => items() === 1);
  mark('limit 1');
  root.render(<StrictMode><Rooms db={null} limit={1} /></StrictMode>); // as while a database opens
  await until('no database', () => text().includes('loading'));
  mark('no db');
  root.unmount();
  mark('unmounted');
  const before = deliveries;
  await db.patch('rooms', 'r-1', { status: 'dirty' }); // the row the last page showed
  await sleep(300);
  const lateDeliveries = deliveries - before;
  db.close();
  return { seen, open, subscribed, lateDeliveries };
}

run().then((result) => { Object.assign(window, { result }); },
  (e: unknown) => { Object.assign(window, { failure: String((e as Error)?.stack ?? e) }); });
