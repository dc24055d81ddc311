// The consumer of the installed tarball (scripts/test-package.mjs copies
// this directory into a scratch project that has `npm install`ed only
// tidesync-<version>.tgz). It imports the package by its name, so `tsc`
// resolves the types through package.json `exports`, and esbuild bundles it
// with the .wasm emitted by the file loader (the URL handed to init).
import init, { TideSync, type LocalEntity, type OpenOptions, type TideSyncError } from 'tidesync';
import wasmUrl from 'tidesync/tidesync_bg.wasm';

export interface Result { created: LocalEntity; read: LocalEntity | null; pending: number; error: string | null }

const options: OpenOptions = {
  dbName: 'package-test', key: { plaintext: true },
  serverUrl: '', apiKey: 'ts_offline', terminalId: 'desk-1', branchId: 'lisbon',
  policies: { rooms: 'merge-three-way' }, autoSync: false,
};

// The app's schema: the package's generic types check every call against it.
type Hotel = { rooms: { status: 'clean' | 'dirty'; floor?: number } };

async function run(): Promise<Result> {
  await init({ module_or_path: wasmUrl });
  const db: TideSync<Hotel> = await TideSync.open<Hotel>(options);
  const created: LocalEntity<Hotel['rooms'], 'rooms'> = await db.create('rooms', { status: 'dirty', floor: 12 }, 'r-1204');
  // @ts-expect-error fields must be JSON: the types are the package's, not `any`
  void (() => db.create('rooms', new Date()));
  // @ts-expect-error a collection the schema does not declare
  void (() => db.get('room', 'r-1204'));
  // @ts-expect-error a field the schema does not declare
  void (() => db.patch('rooms', 'r-1204', { stauts: 'clean' }));
  let error: string | null = null;
  const untyped: TideSync = db; // a typed database is still a TideSync
  try { await untyped.create('rooms', { at: new Date() as never }, 'r-bad'); } catch (e) { error = (e as TideSyncError).code; }
  db.close();
  const again = await TideSync.open(options); // a second open reads what the first wrote
  const read = await again.get('rooms', 'r-1204');
  const pending = (await again.outbox()).length;
  again.close();
  return { created, read, pending, error };
}

run().then((result) => { Object.assign(window, { result }); },
  (e: unknown) => { Object.assign(window, { failure: String((e as Error)?.stack ?? e) }); });
