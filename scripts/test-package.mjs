// The installable package (issue 15, item 7), run by scripts/test-web.sh
// after scripts/build-pkg.sh: `npm pack` of pkg/ into a temporary directory;
// its file list is exactly what a user needs (no tests, no source maps, no
// Rust, nothing from www/); a scratch project in /tmp installs only that
// tarball (offline, an empty npm cache); the consumer in www/package-test/
// is type-checked against the installed package by name (`exports`, module
// resolution bundler and nodenext), bundled with esbuild for the browser in
// both ways of loading the .wasm (the file loader's URL passed to init, and
// init() with the .wasm copied beside the bundle), and run in headless
// Chromium: it opens a plaintext store offline, writes one entity, and reads
// it back after a reopen. The framework bindings (`tidesync/react`,
// `tidesync/vue`) run there too: a small React app (a development build,
// StrictMode) and a small Vue app follow writes, resubscribe when the query
// changes and release their subscriptions when unmounted. React, React DOM
// and Vue are the root's devDependencies, linked into the scratch project
// after the check that the tarball installs no dependency (they are optional
// peers). The root's node_modules gives tsc, esbuild and playwright-core;
// nothing is downloaded.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { startStaticServer } from '../www/server.mjs';

const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const PKG = path.join(ROOT, 'pkg');
const BIN = path.join(ROOT, 'node_modules/.bin');
const CHROMIUM = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';
const ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--no-first-run', '--disable-sync'];
const t0 = Date.now();
const log = (msg) => console.log(`# package: ${msg} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
const run = (cmd, args, cwd) => {
  try {
    return execFileSync(cmd, args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    throw new Error(`${path.basename(cmd)} ${args.join(' ')} failed (${e.status}):\n${e.stdout}${e.stderr}`);
  }
};

assert.ok(fs.existsSync(path.join(PKG, 'tidesync_bg.wasm')), 'pkg/ is missing: run bash scripts/build-pkg.sh first');
const version = JSON.parse(fs.readFileSync(path.join(PKG, 'package.json'), 'utf8')).version;
const cargoVersion = fs.readFileSync(path.join(ROOT, 'Cargo.toml'), 'utf8').match(/^\[package\][^[]*?^version\s*=\s*"([^"]+)"/m)?.[1];
assert.equal(version, cargoVersion, "pkg/package.json's version is the core crate's (Cargo.toml)");

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tidesync-package-'));
const npmEnv = ['--cache', path.join(tmp, 'npm-cache'), '--no-audit', '--no-fund', '--no-update-notifier'];
let browser, web;
try {
  // 1. npm pack: the tarball and its file list.
  const packDir = path.join(tmp, 'pack');
  fs.mkdirSync(packDir);
  const [packed] = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', packDir, ...npmEnv], PKG));
  const tarball = path.join(packDir, packed.filename);
  assert.equal(packed.filename, `tidesync-${version}.tgz`);
  const files = packed.files.map((f) => f.path).sort();
  const allowed = [/^package\.json$/, /^README\.md$/, /^LICENSE$/, /^tidesync\.js$/, /^tidesync\.d\.ts$/, /^tidesync_bg\.wasm$/,
    /^wasm-url\.d\.ts$/, /^(react|vue|inference)\.(js|d\.ts)$/, /^snippets\/tidesync-[0-9a-f]+\/inline\d+\.js$/,
    /^inference\/tidesync_inference(\.js|\.d\.ts|_bg\.wasm)$/];
  const unexpected = files.filter((f) => !allowed.some((re) => re.test(f)));
  assert.deepEqual(unexpected, [], 'the tarball holds only the package (no tests, source maps, Rust, www/)');
  for (const need of ['package.json', 'LICENSE', 'tidesync.js', 'tidesync.d.ts', 'tidesync_bg.wasm', 'react.js', 'react.d.ts', 'vue.js', 'vue.d.ts',
    'inference.js', 'inference.d.ts', 'inference/tidesync_inference.js', 'inference/tidesync_inference_bg.wasm']) assert.ok(files.includes(need), `the tarball has ${need}`);
  const manifest = JSON.parse(fs.readFileSync(path.join(PKG, 'package.json'), 'utf8'));
  assert.equal(manifest.type, 'module');
  assert.ok(manifest.license && Array.isArray(manifest.sideEffects), 'license and sideEffects are set');
  for (const [sub, want] of [['.', 'tidesync.js'], ['./tidesync_bg.wasm', 'tidesync_bg.wasm'], ['./react', 'react.js'], ['./vue', 'vue.js'], ['./inference', 'inference.js']]) {
    const e = manifest.exports[sub];
    assert.equal(e?.default, `./${want}`, `exports["${sub}"]`);
    assert.ok(files.includes(e.types.replace(/^\.\//, '')), `exports["${sub}"].types is in the tarball`);
  }
  for (const peer of ['react', 'vue']) {
    assert.ok(manifest.peerDependencies?.[peer], `${peer} is a peer dependency`);
    assert.equal(manifest.peerDependenciesMeta?.[peer]?.optional, true, `${peer} is an optional peer`);
  }
  log(`${packed.filename}: ${packed.size} bytes, ${packed.unpackedSize} unpacked, ${files.length} files: ${files.join(' ')}`);

  // 2. A scratch project installs only the tarball, offline.
  const app = path.join(tmp, 'app');
  fs.cpSync(path.join(ROOT, 'www/package-test'), app, { recursive: true });
  fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'tidesync-consumer', private: true, type: 'module' }, null, 2));
  run('npm', ['install', tarball, '--offline', '--no-save', ...npmEnv], app);
  const installed = path.join(app, 'node_modules/tidesync');
  assert.deepEqual(fs.readdirSync(path.join(app, 'node_modules')).filter((n) => !n.startsWith('.')), ['tidesync'], 'no dependencies');
  assert.equal(JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8')).version, version);
  // The app's own frameworks, from the root (their dependencies resolve there too, through the links' real paths).
  for (const dep of ['react', 'react-dom', 'vue', '@types/react', '@types/react-dom']) {
    fs.mkdirSync(path.dirname(path.join(app, 'node_modules', dep)), { recursive: true });
    fs.symlinkSync(path.join(ROOT, 'node_modules', dep), path.join(app, 'node_modules', dep), 'dir');
  }
  log('installed from the tarball');

  // 3. Types through `exports`, with the resolution of bundlers and of Node.
  run(path.join(BIN, 'tsc'), ['-p', 'tsconfig.json'], app);
  run(path.join(BIN, 'tsc'), ['-p', 'tsconfig.json', '--module', 'nodenext', '--moduleResolution', 'nodenext'], app);
  log('tsc --noEmit (bundler, nodenext)');
  // The framework examples of both READMEs compile against the installed package.
  const readmes = [['README.md', '### Framework bindings', 'readme'], ['pkg-template/README.md', '## React and Vue', 'package-readme']];
  const examples = readmes.flatMap(([file, heading, tag]) => {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
    const start = text.indexOf(heading);
    assert.ok(start >= 0, `${file} has "${heading}"`);
    const end = text.slice(start + heading.length).search(/\n#{2,3} /);
    const section = end < 0 ? text.slice(start) : text.slice(start, start + heading.length + end);
    const blocks = [...section.matchAll(/```(tsx?)\n([\s\S]*?)```/g)];
    assert.equal(blocks.length, 2, `${file}: a React and a Vue example`);
    return blocks.map(([, lang, code], i) => {
      const header = ["import type { TideSync } from 'tidesync';",
        "type Hotel = { rooms: { number: string; status: 'clean' | 'dirty' } };", 'export {};'];
      if (lang === 'ts') header.push("import { ref } from 'vue';", 'declare const db: TideSync<Hotel>;');
      const name = `${tag}-example-${i}.${lang}`;
      fs.writeFileSync(path.join(app, name), [...header, code].join('\n'));
      return name;
    });
  });
  fs.writeFileSync(path.join(app, 'tsconfig.examples.json'), JSON.stringify({ extends: './tsconfig.json', files: examples }));
  run(path.join(BIN, 'tsc'), ['-p', 'tsconfig.examples.json'], app);
  log(`tsc --noEmit: the READMEs' framework examples (${examples.join(' ')})`);

  // 4. esbuild for the browser, the two ways of loading the .wasm.
  const dist = path.join(app, 'dist');
  const esbuild = (entry, out, extra) => run(path.join(BIN, 'esbuild'), [entry, '--bundle', '--format=esm', '--target=es2022',
    `--outdir=${path.join(dist, out)}`, '--log-level=warning',
    // wasm-bindgen lists one inline snippet twice in its import object (same module).
    '--log-override:duplicate-object-key=silent', ...extra], app);
  esbuild('main.ts', 'file', ['--loader:.wasm=file', '--asset-names=[name]-[hash]']);
  esbuild('default.ts', 'default', []);
  esbuild('inference.ts', 'inference', []);
  const wasmFile = ['--loader:.wasm=file', '--asset-names=[name]-[hash]'];
  // React's development build (StrictMode mounts effects twice only there).
  esbuild('react.tsx', 'react', [...wasmFile, '--define:process.env.NODE_ENV="development"']);
  esbuild('vue.ts', 'vue', [...wasmFile, '--define:process.env.NODE_ENV="development"', '--define:__VUE_OPTIONS_API__=false',
    '--define:__VUE_PROD_DEVTOOLS__=false', '--define:__VUE_PROD_HYDRATION_MISMATCH_DETAILS__=false']);
  fs.copyFileSync(path.join(installed, 'tidesync_bg.wasm'), path.join(dist, 'default/tidesync_bg.wasm'));
  fs.copyFileSync(path.join(installed, 'tidesync_bg.wasm'), path.join(dist, 'inference/tidesync_bg.wasm'));
  fs.copyFileSync(path.join(installed, 'inference/tidesync_inference_bg.wasm'), path.join(dist, 'inference/tidesync_inference_bg.wasm'));
  for (const f of ['anomaly.onnx', 'anomaly.features.json']) fs.copyFileSync(path.join(ROOT, 'models', f), path.join(dist, 'inference', f));
  const sha = fs.readFileSync(path.join(ROOT, 'models/anomaly.onnx.sha256'), 'utf8').trim().split(/\s+/)[0];
  fs.writeFileSync(path.join(dist, 'inference/sha256.txt'), sha);
  const emitted = fs.readdirSync(path.join(dist, 'file')).filter((f) => f.endsWith('.wasm'));
  assert.equal(emitted.length, 1, 'the file loader emitted the .wasm');
  assert.ok(fs.readFileSync(path.join(dist, 'file/main.js'), 'utf8').includes(emitted[0]), 'the bundle refers to the emitted .wasm');
  for (const [dir, entry] of [['file', 'main.js'], ['default', 'default.js'], ['react', 'react.js'], ['vue', 'vue.js'], ['inference', 'inference.js']]) {
    fs.writeFileSync(path.join(dist, dir, 'index.html'), `<!doctype html><meta charset="utf-8"><script type="module" src="./${entry}"></script>\n`);
  }
  log(`esbuild: file/main.js ${fs.statSync(path.join(dist, 'file/main.js')).size} bytes + ${emitted[0]}`);

  // 5. Headless Chromium, no sync server: the store works offline.
  web = await startStaticServer({ root: dist });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  const ctx = await browser.newContext();
  const open = async (dir) => {
    const page = await ctx.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${web.url}/${dir}/`);
    await page.waitForFunction(() => window.result !== undefined || window.failure !== undefined, null, { timeout: 20000 });
    const out = await page.evaluate(() => ({ result: window.result, failure: window.failure }));
    assert.equal(out.failure, undefined, `${dir}: ${out.failure} ${errors.join(' ')}`);
    return out.result;
  };
  const r = await open('file');
  assert.equal(r.created.id, 'r-1204');
  assert.deepEqual(r.read?.fields, { status: 'dirty', floor: 12 }, 'the entity reads back after a reopen');
  assert.equal(r.pending, 1, 'one mutation queued offline (autoSync off, no server)');
  assert.equal(r.error, 'BAD_ARGUMENT', 'a Date is refused with the package error code');
  const d = await open('default');
  assert.deepEqual(d?.fields, { status: 'clean' }, 'init() finds the .wasm beside the bundle');
  log('headless Chromium: opened a plaintext store offline, wrote and read an entity (both .wasm loadings)');
  const inf = await open('inference');
  assert.deepEqual(inf.before, [], 'nothing of the model is fetched before loadModel()');
  assert.deepEqual([inf.model, inf.width], [sha.slice(0, 16), 9]);
  assert.deepEqual(inf.held, [['r-401', 'flagged', true]], 'the rate typo is flagged by tract and held');
  log('headless Chromium: tidesync/inference loaded the shipped model with tract and held a flagged write');

  // 6. The framework bindings: the same steps in React and in Vue (the
  // status pill's phase is whatever an offline store without autoSync says).
  const pill = (text) => text.replace(/^(idle|syncing|offline|error),/, 'PHASE,');
  const steps = (seen) => Object.fromEntries(Object.entries(seen).map(([k, v]) => [k, pill(v)]));
  const framework = {
    mounted: 'PHASE, 1 pending first dirty r-1 dirty',
    created: 'PHASE, 2 pending first dirty r-1 dirty r-2 clean',
    patched: 'PHASE, 3 pending first clean r-1 clean r-2 clean',
    'limit 0': 'PHASE, 3 pending BAD_ARGUMENT', // live() refuses it: an error, no rows, no subscription
    'limit 1': 'PHASE, 3 pending first clean r-1 clean',
    unmounted: '',
  };
  const react = await open('react');
  assert.deepEqual(steps(react.seen), { ...framework, 'no db': 'no status yet loading' }, 'React: the DOM follows create and patch, the new limit, and a null database');
  assert.deepEqual(react.open, { mounted: [1, 1], created: [1, 1], patched: [1, 1], 'limit 0': [0, 1], 'limit 1': [1, 1], 'no db': [0, 0], unmounted: [0, 0] },
    'React: one live query and one status listener while mounted (StrictMode\'s test mount released), none after unmount');
  assert.equal(react.subscribed, 4, "React: live() for StrictMode's test mount, the mount, and each new limit");
  assert.equal(react.lateDeliveries, 0, 'React: no live result after unmount');
  const vue = await open('vue');
  assert.deepEqual(steps(vue.seen), { ...framework, scope: '', 'scope stopped': '' }, 'Vue: the DOM follows create and patch, and the new limit');
  assert.deepEqual(vue.open, { mounted: [1, 1], created: [1, 1], patched: [1, 1], 'limit 0': [0, 1], 'limit 1': [1, 1], unmounted: [0, 0],
    scope: [1, 1], 'scope stopped': [0, 0] }, 'Vue: one subscription of each while mounted, and in the scope until it stops');
  assert.deepEqual(vue.scope.before, [true, 0, null], 'Vue: loading, no rows, no status while the database ref is null');
  assert.deepEqual(vue.scope.after.slice(0, 2), [false, 1], 'Vue: the page after r-1 once the ref has the database');
  assert.match(vue.scope.after[2], /^(idle|syncing|offline|error)$/);
  assert.equal(vue.lateDeliveries, 0, 'Vue: no live result after unmount and the scope\'s stop');
  log('headless Chromium: React (StrictMode) and Vue list rooms live and show the status, resubscribe on a new limit, release on unmount');
} finally {
  await browser?.close();
  await web?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
}
log('ok');
