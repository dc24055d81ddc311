// Latency of models/anomaly.onnx under onnxruntime-node (CPU): batch 1 and
// batch 256 of the fixed batch in models/vectors.json, the median (and min,
// p90) of many timed runs after a warm-up, as inference/examples/bench.rs
// does for tract. Prints one JSON line. Usage: node ort.mjs [runs]
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';

const models = fileURLToPath(new URL('../../models/', import.meta.url));
const runs = Number(process.argv[2] ?? 20000);
const vectors = JSON.parse(readFileSync(models + 'vectors.json', 'utf8'));
const width = vectors.batch[0].length;

const t0 = performance.now();
const session = await ort.InferenceSession.create(models + 'anomaly.onnx', {
  executionProviders: ['cpu'],
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
});
const loadMs = performance.now() - t0;

function feeds(rows) {
  const data = Float32Array.from(rows.flat());
  return { features: new ort.Tensor('float32', data, [rows.length, width]) };
}

async function time(rows) {
  const input = feeds(rows);
  const want = vectors.batch_scores.slice(0, rows.length);
  const got = (await session.run(input)).score.data;
  for (let i = 0; i < rows.length; i++) {
    if (Math.abs(got[i] - want[i]) > 1e-5 * Math.max(1, Math.abs(want[i]))) {
      throw new Error(`row ${i}: ${got[i]} vs ${want[i]}`);
    }
  }
  for (let i = 0; i < runs / 10 + 10; i++) await session.run(input);
  const us = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    await session.run(input);
    us.push((performance.now() - t) * 1000);
  }
  us.sort((a, b) => a - b);
  const r = (x) => Math.round(x * 100) / 100;
  return { min: r(us[0]), median: r(us[us.length >> 1]), p90: r(us[Math.floor(us.length * 0.9)]) };
}

const batch1 = await time(vectors.batch.slice(0, 1));
const batch256 = await time(vectors.batch);
console.log(JSON.stringify({
  runtime: `onnxruntime-node ${ort.env.versions?.common ?? ''}`.trim(),
  runs,
  load_ms: Math.round(loadMs * 100) / 100,
  batch1_us: batch1,
  batch256_us: batch256,
}));
