// A separate process for the restart and kill -9 tests.
//   worker.mjs write <options-json> <n>   n rooms, each created then patched twice; exits without close()
//   worker.mjs flush <options-json>       syncs in the background, printing `pending <n>` on each status
//   worker.mjs status <options-json>      one write, one syncNow(); prints the status as JSON
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { TideSync } = require('../index.js');

const [mode, json, n] = process.argv.slice(2);
const o = JSON.parse(json);
if (o.key.hostKey) o.key = { hostKey: Uint8Array.from(o.key.hostKey) };
const db = await TideSync.open(o);
if (mode === 'write') {
  for (let i = 0; i < Number(n); i++) {
    const id = `room-${String(i).padStart(4, '0')}`;
    await db.create('rooms', { floor: i % 7, state: 'dirty', step: 0 }, id);
    await db.patch('rooms', id, { state: 'in-progress', step: 1 });
    await db.patch('rooms', id, { state: 'clean', step: 2 });
  }
  console.log(`written ${(await db.status()).pending}`);
  process.exit(0); // no close(): the process just ends
} else if (mode === 'flush') {
  db.onStatus((s) => console.log(`pending ${s.pending}`));
  setInterval(() => {}, 1000); // the addon does not hold the process open: stay until killed
} else if (mode === 'status') {
  // One write and one syncNow(); prints the status as JSON.
  await db.create('rooms', { state: 'dirty' }, 'r-1');
  await db.syncNow();
  console.log(JSON.stringify(await db.status()));
  db.close();
}
