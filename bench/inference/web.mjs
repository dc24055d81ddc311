// tract (tidesync/inference, its own .wasm) against onnxruntime-web (wasm
// backend, one thread) in one headless Chromium page: batch 1 and batch 256
// of models/vectors.json, after both are checked against its scores.
// Prints each repetition and the median ratios tract/ort (below 1: tract
// is faster). Needs pkg/ (bash scripts/build-pkg.sh) and this folder's npm
// packages (run-web.sh does both).
//   node bench/inference/web.mjs [samples] [loop] [repetitions]
import { chromium } from 'playwright-core';
import { startStaticServer } from '../../www/server.mjs';
import { ROOT, CHROMIUM, ARGS } from '../../www/e2e/chromium.mjs';

const [samples, loop, reps] = [Number(process.argv[2] ?? 41), Number(process.argv[3] ?? 400), Number(process.argv[4] ?? 3)];
const web = await startStaticServer({ root: ROOT });
const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
const results = [];
try {
  for (let r = 0; r < reps; r++) {
    // A fresh page per repetition: both runtimes loaded anew.
    const page = await (await browser.newContext()).newPage();
    page.on('console', (m) => { if (m.type() === 'error') console.error(`# page: ${m.text()}`); });
    page.on('pageerror', (e) => console.error(`# page error: ${e.message}`));
    await page.goto(`${web.url}/bench/inference/web.html`);
    await page.waitForFunction(() => window.ready === true, null, { timeout: 60000 });
    const res = await page.evaluate((o) => window.bench(o), { samples, loop });
    console.log(JSON.stringify(res));
    results.push(res);
    await page.context().close();
  }
} finally {
  await browser.close();
  await web.close();
}
const med = (a) => { const b = [...a].sort((x, y) => x - y); return b[b.length >> 1]; };
const f = (x) => x.toFixed(2);
for (const b of ['batch1', 'batch256']) {
  const t = results.map((r) => r[b].tract_us), o = results.map((r) => r[b].ort_us), q = results.map((r) => r[b].ratio);
  console.log(`${b.padStart(9)}: tract median ${f(med(t))} us (${f(Math.min(...t))}-${f(Math.max(...t))}), `
    + `onnxruntime-web ${f(med(o))} us (${f(Math.min(...o))}-${f(Math.max(...o))}), tract/ort ${f(med(q))} (${f(Math.min(...q))}-${f(Math.max(...q))})`);
}
console.log(`load: tract ${f(med(results.map((r) => r.tract_load_ms)))} ms, onnxruntime-web ${f(med(results.map((r) => r.ort_load_ms)))} ms`);
