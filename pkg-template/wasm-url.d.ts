// `import wasmUrl from 'tidesync/tidesync_bg.wasm'` with a bundler that
// turns a .wasm import into the URL of the emitted file (esbuild
// `loader: { '.wasm': 'file' }`, webpack `type: 'asset/resource'`); pass it
// to `init({ module_or_path: wasmUrl })`.
declare const wasmUrl: string;
export default wasmUrl;
