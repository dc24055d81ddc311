// The on-device model from the installed package: `tidesync/inference`
// imports tract's own .wasm only in loadModel(). esbuild leaves that
// module's `new URL('tidesync_inference_bg.wasm', import.meta.url)` as it
// is, so the test copies the .wasm beside this bundle, with the model and
// its features file; the allow list is the model's SHA-256 (sha256.txt).
import init, { TideSync } from 'tidesync';
import { loadModel } from 'tidesync/inference';

(async () => {
  await init();
  const text = async (f: string) => (await fetch(f)).text();
  const before = performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.includes('tidesync_inference'));
  const scorer = await loadModel({
    model: new Uint8Array(await (await fetch('anomaly.onnx')).arrayBuffer()),
    features: await text('anomaly.features.json'),
    sha256: [(await text('sha256.txt')).trim()],
  });
  const db = await TideSync.open({
    dbName: 'package-test-inference', key: { plaintext: true }, serverUrl: '', apiKey: 'ts_offline',
    terminalId: 'desk-1', branchId: 'lisbon', autoSync: false, review: { rooms: 'hold_flagged' },
  });
  db.setScorer(scorer);
  await db.create('rooms', { status: 'clean', rate: 120 }, 'r-401');
  await db.patch('rooms', 'r-401', { rate: 12000 });
  const held = (await db.held()).map((e) => [e.mutation.entity_id, e.state.state === 'held' ? e.state.reason : null, e.mutation.anomaly?.flagged ?? null]);
  db.close();
  return { before, model: scorer.model, width: scorer.width, held };
})().then((result) => { Object.assign(window, { result }); },
  (e: unknown) => { Object.assign(window, { failure: String((e as Error)?.stack ?? e) }); });
