// The README's browser examples, as written: the quick start runs in
// headless Chromium against the reference server with the demo's rules file
// (only `serverUrl` and `apiKey` are the test's), and the typed example
// type-checks with a compile error on exactly the lines it marks `error:`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { transformSync } from 'esbuild';
import { chromium } from 'playwright-core';
import { startStaticServer } from '../server.mjs';
import { ROOT, CHROMIUM, ARGS, openPage } from './chromium.mjs';
import { startSyncServer, findServerBinary } from './sync-server.mjs';

const RULES_FILE = path.join(ROOT, 'server/rules/hotel.json');

/** The ```ts blocks of the README's browser section, in order. */
function browserBlocks() {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('## In the browser: the Wasm package');
  assert.ok(start >= 0, 'the README has its browser section');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  return [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
}

/** tsc --strict's errors on `lines`, written as `dir`/example.ts ('' if none). */
function tscErrors(dir, lines) {
  fs.writeFileSync(path.join(dir, 'example.ts'), lines.join('\n'));
  try {
    execFileSync(path.join(ROOT, 'node_modules/.bin/tsc'), ['--noEmit', '--strict', '--target', 'ES2022',
      '--module', 'ES2022', '--moduleResolution', 'bundler', '--lib', 'ESNext,DOM', path.join(dir, 'example.ts')],
    { encoding: 'utf8' });
    return '';
  } catch (e) { return e.stdout || String(e); }
}

let sync, web;
before(async () => {
  if (!findServerBinary()) throw new Error('the reference server is not built (cargo build -p tidesync-server)');
  // The quick start's terminal and branch.
  sync = await startSyncServer({ args: ['--rules', RULES_FILE], branch: 'lisbon', terminal: 'desk-1' });
  web = await startStaticServer({ root: ROOT, upstream: sync.url });
});
after(async () => { await web?.close(); await sync?.close(); });

test('the quick start runs as written against the reference server with the demo rules', async () => {
  const [quick] = browserBlocks();
  assert.match(quick, /TideSync\.open\(/);
  // Its imports become the function's arguments; its server, the test's.
  const imports = quick.split('\n').filter((l) => /^import /.test(l));
  assert.deepEqual(imports.map((l) => l.match(/from '([^']+)'/)[1]), ['tidesync', './hotel.json']);
  const body = quick.split('\n').filter((l) => !/^import /.test(l)).join('\n')
    .replace("serverUrl: 'https://sync.example.com'", "serverUrl: ''");
  assert.ok(body.includes("serverUrl: ''"), 'the example names its server as the test expects');
  const js = transformSync(body, { loader: 'ts', format: 'esm' }).code;
  const rules = JSON.parse(fs.readFileSync(RULES_FILE, 'utf8'));
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  try {
    const page = await openPage(await browser.newContext(), web.url);
    const got = await page.evaluate(async ({ js, rules, apiKey }) => {
      const { default: init, TideSync } = await import('/pkg/tidesync.js');
      const AsyncFunction = (async () => {}).constructor;
      const run = new AsyncFunction('init', 'TideSync', 'rules', 'apiKey',
        `${js}\nreturn db;`);
      const db = await run(init, TideSync, rules, apiKey);
      await db.syncNow();
      const out = { room: await db.get('rooms', '1204'), status: await db.status(), dead: (await db.deadLetters()).length };
      // The rules came through: a status outside the enum is refused at once.
      try { await db.patch('rooms', '1204', { status: 'sparkling' }); } catch (e) { out.refused = e.code; }
      db.close();
      return out;
    }, { js, rules, apiKey: sync.apiKey });
    assert.equal(got.room.fields.status, 'clean');
    assert.equal(got.room.pending, 0, 'synced');
    assert.equal(got.status.pending, 0);
    assert.equal(got.dead, 0);
    assert.equal(got.refused, 'EVENT_INVALID');
    const r = await fetch(`${sync.url}/v1/snapshot?limit=100`, {
      headers: { authorization: `Bearer ${sync.apiKey}`, 'x-tidesync-branch': 'lisbon' } });
    const room = (await r.json()).entities.find((e) => e.collection === 'rooms' && e.id === '1204');
    assert.deepEqual(room?.fields, { number: '1204', status: 'clean' }, 'the server has the example\'s room');
  } finally {
    await browser.close();
  }
});

test('the hold-for-review example type-checks against the package', () => {
  const block = browserBlocks().find((b) => b.includes('setScorer('));
  assert.ok(block, 'the README has a scoring example');
  const dir = fs.mkdtempSync(path.join(ROOT, 'www/.readme-'));
  try {
    const header = [
      "import { TideSync, type OpenOptions } from '../../pkg/tidesync.js';",
      'declare const options: OpenOptions;',
      'declare function rateScore(before: unknown, after: unknown): number;',
      'export {};',
    ];
    assert.equal(tscErrors(dir, [...header, ...block.split('\n')]), '', 'tsc finds no error');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the tract example type-checks against tidesync/inference and allow-lists the shipped model', () => {
  const block = browserBlocks().find((b) => b.includes("from 'tidesync/inference'"));
  assert.ok(block, 'the README has a loadModel example');
  const sha = fs.readFileSync(path.join(ROOT, 'models/anomaly.onnx.sha256'), 'utf8').trim().split(/\s+/)[0];
  assert.ok(block.includes(`'${sha}'`), 'the example allows models/anomaly.onnx as it is');
  const dir = fs.mkdtempSync(path.join(ROOT, 'www/.readme-'));
  try {
    const header = [
      "import { TideSync } from '../../pkg/tidesync.js';",
      'declare const db: TideSync;',
    ];
    const body = block.replace("from 'tidesync/inference'", "from '../../pkg/inference.js'").split('\n');
    assert.equal(tscErrors(dir, [...body.filter((l) => /^import /.test(l)), ...header, ...body.filter((l) => !/^import /.test(l)), 'export {};']), '', 'tsc finds no error');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the typed example compiles, except on each line it marks as an error', () => {
  const typed = browserBlocks().find((b) => b.includes('TideSync.open<'));
  assert.ok(typed, 'the README has a typed example');
  const dir = fs.mkdtempSync(path.join(ROOT, 'www/.readme-'));
  try {
    const header = [
      "import { TideSync } from '../../pkg/tidesync.js';",
      'declare const serverUrl: string;',
      'declare const apiKey: string;',
      'export {};',
    ];
    const lines = [...header, ...typed.split('\n')];
    const marked = lines.flatMap((l, i) => (/\/\/ error:/.test(l) ? [i + 1] : []));
    assert.ok(marked.length >= 3, 'the example shows its compile errors');
    const out = tscErrors(dir, lines);
    const failed = [...new Set([...out.matchAll(/example\.ts\((\d+),\d+\): error/g)].map((m) => Number(m[1])))];
    assert.deepEqual(failed, marked, `tsc's errors are on the marked lines only:\n${out}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
