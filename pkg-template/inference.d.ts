// The browser's on-device anomaly model (issue 18): tract-onnx in its own
// .wasm, imported only when loadModel() is called.
import type { Scorer } from "./tidesync.js";

/** A Scorer of `loadModel()`: also runs the model on raw feature rows. */
export interface ModelScorer extends Scorer {
  /** Values per row of `run`'s batch. */
  readonly width: number;
  /** Runs the model on rows of `width` features, one after the other: one score per row. */
  run(batch: Float32Array): Float32Array;
}

/** Loads an allow-listed ONNX anomaly model with tract: `model` the .onnx
 *  bytes, `features` the text of its anomaly.features.json, `sha256` the
 *  SHA-256s allowed, `wasm` where the tract .wasm is when a bundler moved
 *  it (default: beside this module). Rejects with MODEL_MISSING,
 *  MODEL_NOT_ALLOWED, MODEL_CORRUPT or BAD_ARGUMENT (a TideSyncError). */
export declare function loadModel(options: {
  model: Uint8Array; features: string; sha256: string[]; wasm?: string | URL | Request;
}): Promise<ModelScorer>;
