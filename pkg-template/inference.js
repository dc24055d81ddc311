// The browser's on-device anomaly model (issue 18): tract-onnx in its own
// .wasm (./inference/), imported only when loadModel() is first called, so
// the core's module and an app that does not score never load it.

let runtime = null;

function fail(code, message) {
  const e = new Error(message);
  e.name = 'TideSyncError';
  e.code = code;
  return e;
}

/** Imports and instantiates the tract module once (`wasm`: where its .wasm
 *  is, when a bundler moved it; default beside this file). */
async function load(wasm) {
  if (!runtime) {
    runtime = (async () => {
      const m = await import('./inference/tidesync_inference.js');
      await m.default(wasm === undefined ? undefined : { module_or_path: wasm });
      return m;
    })();
    runtime.catch(() => { runtime = null; });
  }
  return runtime;
}

/**
 * Loads an allow-listed ONNX anomaly model: `model` the .onnx bytes,
 * `features` the text of its anomaly.features.json, `sha256` the SHA-256s
 * allowed. Resolves with a Scorer for `setScorer()`; rejects with
 * MODEL_MISSING, MODEL_NOT_ALLOWED, MODEL_CORRUPT or BAD_ARGUMENT.
 */
export async function loadModel(options) {
  if (options === null || typeof options !== 'object') throw fail('BAD_ARGUMENT', 'options must be {model, features, sha256}');
  const { model, features, sha256, wasm } = options;
  if (!(model instanceof Uint8Array)) throw fail('BAD_ARGUMENT', "options.model must be the model file's bytes (a Uint8Array)");
  if (typeof features !== 'string') throw fail('BAD_ARGUMENT', "options.features must be the text of the model's features file");
  if (!Array.isArray(sha256) || !sha256.every((s) => typeof s === 'string')) throw fail('BAD_ARGUMENT', 'options.sha256 must be the allowed SHA-256s (strings)');
  const m = await load(wasm);
  const native = m.InferenceModel.load(model, features, sha256);
  return Object.freeze({
    model: native.model,
    /** Scores one write (what the engine passes a scorer). */
    score(input) {
      return JSON.parse(native.score(JSON.stringify(input)));
    },
    /** Runs the model on rows of `width` features: one score per row. */
    run(batch) {
      return native.run(batch);
    },
    width: native.width,
  });
}
