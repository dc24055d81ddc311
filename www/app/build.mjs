// Builds the housekeeping app into www/app/dist/ (generated, not committed):
// esbuild bundles src/main.ts with the package from pkg/ (run
// scripts/build-pkg.sh first), and the .wasm is copied beside the bundle.
// Nothing is loaded from a CDN: the service worker (sw.js) caches this shell.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';

const here = path.dirname(new URL(import.meta.url).pathname);
const pkg = path.resolve(here, '../../pkg');
if (!fs.existsSync(path.join(pkg, 'tidesync_bg.wasm')) || !fs.existsSync(path.join(pkg, 'inference/tidesync_inference_bg.wasm'))) {
  console.error('pkg/ is missing: run bash scripts/build-pkg.sh first');
  process.exit(1);
}
const dist = path.join(here, 'dist');
fs.rmSync(dist, { recursive: true, force: true });
fs.mkdirSync(dist);
await build({
  entryPoints: [path.join(here, 'src/main.ts')],
  bundle: true, format: 'esm', target: 'es2022', minify: true, sourcemap: true,
  outfile: path.join(dist, 'app.js'), logLevel: 'warning',
  // wasm-bindgen lists one inline snippet twice in its import object (same module).
  logOverride: { 'duplicate-object-key': 'silent' },
});
fs.copyFileSync(path.join(pkg, 'tidesync_bg.wasm'), path.join(dist, 'tidesync_bg.wasm'));
// The on-device anomaly model (issue 18), loaded by the app after it opens:
// tract's own .wasm and the model with its features file.
fs.copyFileSync(path.join(pkg, 'inference/tidesync_inference_bg.wasm'), path.join(dist, 'tidesync_inference_bg.wasm'));
for (const f of ['anomaly.onnx', 'anomaly.features.json']) fs.copyFileSync(path.resolve(here, '../../models', f), path.join(dist, f));
const size = (f) => fs.statSync(path.join(dist, f)).size;
console.log(`www/app/dist: app.js ${size('app.js')} bytes, tidesync_bg.wasm ${size('tidesync_bg.wasm')} bytes`);
