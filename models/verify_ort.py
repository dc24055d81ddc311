#!/usr/bin/env python3
"""Runs onnxruntime on models/anomaly.onnx and checks vectors.json.

The committed model's SHA-256 must match anomaly.onnx.sha256 and both JSON
files; onnxruntime's scores of the fixed batch and of every labelled record
must equal the recorded ones (to 1e-5, relative above 1); normal records
must score under the threshold and planted anomalies at or above it.
"""

import hashlib
import json
import os
import sys

import numpy as np
import onnxruntime as ort

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    body = open(os.path.join(HERE, "anomaly.onnx"), "rb").read()
    sha = hashlib.sha256(body).hexdigest()
    listed = open(os.path.join(HERE, "anomaly.onnx.sha256")).read().split()[0]
    spec = json.load(open(os.path.join(HERE, "anomaly.features.json")))
    vec = json.load(open(os.path.join(HERE, "vectors.json")))
    fails = []
    for what, v in (("anomaly.onnx.sha256", listed), ("features.json", spec["model_sha256"]), ("vectors.json", vec["model_sha256"])):
        if v != sha:
            fails.append(f"{what} names {v}, the model is {sha}")
    sess = ort.InferenceSession(body, providers=["CPUExecutionProvider"])

    def run(rows):
        return sess.run(["score"], {"features": np.asarray(rows, np.float32)})[0].astype(np.float64)

    def close(got, want):
        return abs(got - want) <= 1e-5 * max(1.0, abs(want))

    for i, (g, w) in enumerate(zip(run(vec["batch"]), vec["batch_scores"])):
        if not close(g, w):
            fails.append(f"batch[{i}]: onnxruntime {g}, recorded {w}")
    thr = vec["threshold"]
    recs = vec["records"]
    for r, g in zip(recs, run([r["features"] for r in recs])):
        if not close(g, r["score"]):
            fails.append(f"{r['name']}: onnxruntime {g}, recorded {r['score']}")
        if r["label"] == "normal" and g >= thr:
            fails.append(f"{r['name']} is normal but scores {g} >= {thr}")
        if r["label"] == "anomaly" and g < thr:
            fails.append(f"{r['name']} is planted but scores {g} < {thr}")
    for f in fails:
        print("verify_ort: " + f, file=sys.stderr)
    if fails:
        return 1
    print(f"verify_ort: onnxruntime {ort.__version__} matches vectors.json ({len(vec['batch'])} batch rows, {len(recs)} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
