// The declared TideSync classes against the code. Run by scripts/test-web.sh
// after the package is built:
//   node node/test/dts-parity.mjs pkg/tidesync.d.ts node/index.d.ts
// 1. The browser package's class is hand-written (src/web/tidesync.d.ts:
//    wasm-bindgen cannot write its generic methods, so api.rs skips it): it
//    must declare every method the Wasm module exports (the `tidesync_*`
//    entries of InitOutput in pkg/tidesync.d.ts) and no other, each static
//    or not and with the parameters of the generated JS (pkg/tidesync.js).
// 2. node/index.d.ts's TideSync against the browser package's, method by
//    method: the same names, parameters and results.
import fs from 'node:fs';
import path from 'node:path';

/** The bodies of every `{…}` that follows a match of `re` in `text`. */
function blocks(text, re) {
  const out = [];
  for (const m of text.matchAll(re)) {
    let depth = 0, i = m.index + m[0].length - 1, body = '';
    for (; i < text.length; i++) {
      if (text[i] === '{') depth++;
      if (text[i] === '}' && --depth === 0) break;
      body += text[i];
    }
    out.push(body.slice(1));
  }
  return out;
}

/** name → normalised signature, for the members of TideSync: its class and
 *  any interface merged into it (wasm-bindgen's optional-argument methods). */
function members(file) {
  const text = fs.readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
  const bodies = [...blocks(text, /export (?:declare )?class TideSync(?:<[^{]*>)? \{/g), ...blocks(text, /export interface TideSync(?:<[^{]*>)? \{/g)];
  if (bodies.length === 0) throw new Error(`${file}: no class TideSync`);
  // Members end at a `;` outside any (), {}, [] or <> (inline object types hold `;` too).
  const parts = [];
  for (const src of bodies) {
    let cur = '', level = 0;
    for (let k = 0; k < src.length; k++) {
      const ch = src[k];
      if ('({[<'.includes(ch)) level++;
      if (')}]'.includes(ch) || (ch === '>' && src[k - 1] !== '=')) level--;
      if (ch === ';' && level === 0) { parts.push(cur); cur = ''; } else cur += ch;
    }
    parts.push(cur);
  }
  const out = new Map();
  for (const m of parts.map((s) => s.replace(/\s+/g, ' ').trim()).filter(Boolean)) {
    const name = m.match(/^(?:static |private |readonly )*([A-Za-z_$][\w$]*|\[Symbol\.\w+\])/)?.[1];
    if (!name) throw new Error(`${file}: cannot read member ${m}`);
    if (out.has(name)) throw new Error(`${file}: ${name} declared twice`);
    out.set(name, m.replace(/ ?([(),:<>|]) ?/g, '$1'));
  }
  return out;
}

/** The parameter names of a normalised member signature, in order. */
function params(sig) {
  const open = sig.indexOf('(');
  let depth = 0, cur = '';
  const out = [];
  let prev = '';
  for (const ch of sig.slice(open + 1)) {
    const arrow = ch === '>' && prev === '='; // `=>` closes nothing
    prev = ch;
    if ('({[<'.includes(ch)) depth++;
    if (')}]>'.includes(ch) && !arrow && depth-- === 0) break;
    if (ch === ',' && depth === 0) { out.push(cur); cur = ''; } else cur += ch;
  }
  if (cur.trim()) out.push(cur);
  return out.map((p) => p.trim().match(/^([\w$]+)/)[1]);
}

const [browserFile, nodeFile] = process.argv.slice(2);
const browser = members(browserFile);
const node = members(nodeFile);
const problems = [];

// 1. The browser class against the Wasm module's exports and the generated JS.
const dts = fs.readFileSync(browserFile, 'utf8');
const initOutput = blocks(dts, /export interface InitOutput \{/g)[0];
if (!initOutput) throw new Error(`${browserFile}: no InitOutput`);
const exported = new Set([...initOutput.matchAll(/readonly tidesync_([\w$]+):/g)].map((m) => m[1]));
if (/readonly __wbg_tidesync_free:/.test(initOutput)) exported.add('free');
if (exported.size < 20) throw new Error(`${browserFile}: only ${exported.size} tidesync_* exports in InitOutput`);
const jsFile = browserFile.replace(/\.d\.ts$/, '.js');
const js = fs.readFileSync(jsFile, 'utf8');
const jsClass = blocks(js, /export class TideSync \{/g)[0];
if (!jsClass) throw new Error(`${jsFile}: no class TideSync`);
const jsMethods = new Map([...jsClass.matchAll(/^ {4}(static )?([\w$]+)\(([^)]*)\) \{$/gm)]
  .filter((m) => !m[2].startsWith('__'))
  // Parameter names are the Rust ones (snake_case); declared, camelCase.
  .map((m) => [m[2], { static: Boolean(m[1]), params: m[3].split(',').map((p) => p.trim().replace(/_([a-z])/g, (_, c) => c.toUpperCase())).filter(Boolean) }]));
for (const name of exported) {
  if (!jsMethods.has(name)) problems.push(`${jsFile}: the Wasm export tidesync_${name} is not a method of class TideSync`);
}
for (const name of jsMethods.keys()) {
  if (!exported.has(name)) problems.push(`${browserFile}: ${jsFile}'s TideSync.${name} is not among InitOutput's tidesync_* exports`);
}
if (/\bany\b/.test([...browser.values()].join(';'))) problems.push(`${browserFile}: TideSync declares \`any\``);
if (!js.includes('TideSync.prototype[Symbol.dispose] = TideSync.prototype.free')) problems.push(`${jsFile}: TideSync has no [Symbol.dispose]`);
for (const [name, m] of jsMethods) {
  const sig = browser.get(name);
  if (!sig) { problems.push(`${browserFile}: TideSync does not declare ${m.static ? 'static ' : ''}${name}(${m.params.join(', ')}), which the Wasm module exports`); continue; }
  if (sig.startsWith('static ') !== m.static) problems.push(`${browserFile}: TideSync.${name} is ${m.static ? '' : 'not '}static in ${jsFile}`);
  const declared = params(sig);
  if (declared.join() !== m.params.join()) problems.push(`${browserFile}: TideSync.${name}(${declared.join(', ')}) but ${jsFile} has ${name}(${m.params.join(', ')})`);
}
// wasm-bindgen's memory management; Node's connectivity and open options.
const browserOnly = new Set(['free', '[Symbol.dispose]']);
const nodeOnly = new Set(['setOnline']);
for (const name of browser.keys()) {
  if (!jsMethods.has(name) && !['constructor', '[Symbol.dispose]'].includes(name)) {
    problems.push(`${browserFile}: TideSync declares ${name}, which the Wasm module does not export`);
  }
}

// 2. The Node class against the browser class.
for (const [name, sig] of browser) {
  if (browserOnly.has(name)) continue;
  if (!node.has(name)) { problems.push(`missing in ${nodeFile}: ${sig}`); continue; }
  const theirs = node.get(name);
  // wasm-bindgen writes a promise of nothing as Promise<undefined>.
  const norm = (s) => s.replace(/options:NodeOpenOptions/, 'options:OpenOptions').replace(/Promise<undefined>/g, 'Promise<void>');
  if (norm(theirs) !== norm(sig)) problems.push(`${name} differs:\n  browser ${sig}\n  node    ${theirs}`);
}
for (const name of node.keys()) {
  if (!browser.has(name) && !nodeOnly.has(name)) problems.push(`only in ${nodeFile}: ${node.get(name)}`);
}
if (problems.length) {
  console.error(problems.join('\n'));
  process.exit(1);
}
console.log(`${browserFile}: TideSync declares the ${jsMethods.size} methods of the Wasm module (${path.basename(jsFile)}), with their parameters`);
console.log(`${nodeFile}: the same ${browser.size - browserOnly.size} members as ${browserFile}'s TideSync (+ ${[...nodeOnly].join(', ')})`);
