// The other way to load the .wasm: init() with no argument fetches
// new URL('tidesync_bg.wasm', import.meta.url), which esbuild leaves as it
// is, so the test copies the .wasm beside this bundle.
import init, { TideSync } from 'tidesync';

(async () => {
  await init();
  const db = await TideSync.open({
    dbName: 'package-test-default', key: { plaintext: true }, serverUrl: '', apiKey: 'ts_offline',
    terminalId: 'desk-1', branchId: 'lisbon', autoSync: false,
  });
  await db.create('rooms', { status: 'clean' }, 'r-301');
  const read = await db.get('rooms', 'r-301');
  db.close();
  return read;
})().then((result) => { Object.assign(window, { result }); },
  (e: unknown) => { Object.assign(window, { failure: String((e as Error)?.stack ?? e) }); });
