// Prints a DevTools CPU profile (Profiler.stop's `profile`): self time by
// kind (Wasm, JS, idle, the browser's own work) and by function (top 30).
// Wasm functions have names only in a build with TIDESYNC_WASM_NAMES=1.
import path from 'node:path';

export function report(prof, top = 30) {
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = prof.timeDeltas;
  for (let i = 0; i < prof.samples.length; i++) {
    const f = byId.get(prof.samples[i]).callFrame;
    const name = `${f.functionName || '(anonymous)'} ${f.url ? path.basename(f.url) : ''}`.trim();
    self.set(name, (self.get(name) ?? 0) + (dt[i] ?? 0) / 1000);
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const kind = (name) => {
    if (name.startsWith('(idle)')) return 'idle';
    if (name.startsWith('(program)') || name.startsWith('(garbage')) return name.split(' ')[0];
    if (/wasm/.test(name) || /^\$?[a-z_0-9:<>]+::/.test(name)) return 'wasm';
    return 'js';
  };
  const kinds = new Map();
  for (const [k, v] of self) kinds.set(kind(k), (kinds.get(kind(k)) ?? 0) + v);
  console.log(`\nself time by kind (ms, share of ${total.toFixed(0)} ms sampled):`);
  for (const [k, v] of [...kinds].sort((a, b) => b[1] - a[1])) console.log(`  ${k.padEnd(20)} ${v.toFixed(0).padStart(7)}  ${(100 * v / total).toFixed(1)}%`);
  console.log(`\nself time by function (top ${top}):`);
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${v.toFixed(0).padStart(7)} ms  ${(100 * v / total).toFixed(1).padStart(5)}%  ${k.slice(0, 110)}`);
}
