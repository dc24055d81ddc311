#!/usr/bin/env python3
"""Trains the anomaly model of issue 18 on seeded synthetic hotel/POS writes.

    python models/train.py           # writes the four files below into models/
    python models/train.py --check   # retrains in a temp dir, fails if any byte differs
    python models/train.py --out DIR # writes them into DIR

Outputs:
  anomaly.onnx           the model: standardised features [batch, 9] -> score [batch]
  anomaly.onnx.sha256    its SHA-256 (the id the Rust loader allows)
  anomaly.features.json  what the featurizer needs: feature order, fields read,
                         normalisation constants, rarity tables, threshold
  vectors.json           a fixed batch of 256 feature vectors with onnxruntime's
                         scores, labelled normal records and planted anomalies
                         (raw fields, their features and onnxruntime's score)

The model. One write becomes 9 features, 4 for `rooms` and 5 for `sales`
(the other collection's block is 0, its mean). Each block is standardised
(featurizer) and then whitened by the inverse Cholesky factor of its
correlation matrix (the graph: MatMul); the score is the mean square of the
whitened vector (Mul, ReduceMean), a Mahalanobis distance. A tiny
autoencoder was the first idea, but its reconstruction error is small for
an extreme value along a direction it reconstructs well (a rate of 12,000
on the rate axis), which is exactly the typo to catch; the Gaussian model
flags extremes in every direction and broken correlations (a sale total
100x its item count) alike, and is fitted in closed form, so it retrains to
the same bytes.

Reproducibility: data from numpy's PCG64 with fixed seeds, BLAS on one
thread, every constant rounded to 6 significant digits before it is written
(float32 in the graph), fixed opset and IR version, no producer version,
no timestamps, JSON with sorted keys. The scores in vectors.json are
onnxruntime's, rounded to 6 significant digits (its kernels differ by CPU
in the last bits; train.py also checks them against numpy's float64
evaluation of the same graph).
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

SEED = 18
HERE = os.path.dirname(os.path.abspath(__file__))
FILES = ["anomaly.onnx", "anomaly.onnx.sha256", "anomaly.features.json", "vectors.json"]

STATUSES = ["clean", "dirty", "inspected", "occupied", "out_of_order"]
# Tokens of a status transition: "before>after"; "" stands for no status
# (a new room, or a field that is not a known string).
NONE = ""
ROOM_FEATURES = ["rooms.log_rate", "rooms.log_rate_change", "rooms.status_nll", "rooms.hour_nll"]
SALE_FEATURES = [
    "sales.log_total",
    "sales.log_items",
    "sales.discount_frac",
    "sales.refund",
    "sales.hour_nll",
]
FEATURES = ROOM_FEATURES + SALE_FEATURES
# The kinds of write scored, per collection (a delete never is).
KINDS = {"rooms": ["create", "patch"], "sales": ["append", "create"]}
WIDTH = len(FEATURES)
# The hotel's clock: hours of day are taken at this offset from UTC.
UTC_OFFSET_MINUTES = 0
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
THRESHOLD_QUANTILE = 0.999
THRESHOLD_MARGIN = 1.5


def sig6(x):
    """Rounds to 6 significant digits and to the nearest float32 (what is written)."""
    x = float(x)
    if x == 0.0 or not math.isfinite(x):
        return 0.0
    r = float(f"{x:.6g}")
    return float(np.float32(r))


# --- synthetic data -------------------------------------------------------


def hour_at(at_ms):
    minutes = at_ms // 60_000 + UTC_OFFSET_MINUTES
    return (minutes // 60) % 24


def at_hour(rng, hour):
    day = int(rng.integers(0, 300))
    minute = int(rng.integers(0, 60))
    return T0 + ((day * 24 + hour) * 60 + minute) * 60_000 - UTC_OFFSET_MINUTES * 60_000


# Housekeeping and front desk, by hour: busy 7-22, a little at night.
ROOM_HOURS = np.array([1, 1, 1, 1, 1, 2, 4, 8, 12, 14, 14, 12, 10, 10, 12, 12, 10, 8, 6, 5, 4, 3, 2, 1], float)
# Restaurant and bar: breakfast, lunch, dinner, the bar till 23; night desk sales are rare.
SALE_HOURS = np.array([0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 3, 12, 14, 8, 4, 6, 14, 13, 6, 4, 4, 6, 12, 14, 12, 9, 6, 2], float)
# The housekeeping cycle: from a status, the next ones and their weights.
NEXT_STATUS = {
    "dirty": {"clean": 90, "out_of_order": 2, "dirty": 8},
    "clean": {"inspected": 60, "occupied": 30, "dirty": 3, "out_of_order": 1, "clean": 6},
    "inspected": {"occupied": 85, "dirty": 3, "out_of_order": 1, "inspected": 11},
    "occupied": {"dirty": 80, "occupied": 20},
    "out_of_order": {"dirty": 80, "out_of_order": 20},
}
ROOM_TYPES = [(90.0, 0.08, 0.35), (125.0, 0.10, 0.45), (320.0, 0.12, 0.20)]  # rate, spread, share


def pick(rng, weights):
    w = np.asarray(weights, float)
    return int(rng.choice(len(w), p=w / w.sum()))


def room_rate(rng):
    t = pick(rng, [s for _, _, s in ROOM_TYPES])
    base, spread, _ = ROOM_TYPES[t]
    return round(base * math.exp(float(rng.normal(0.0, spread))), 0)


def room_write(rng):
    """A normal write of a room: a new room, a status change, a rate change or a note."""
    hour = pick(rng, ROOM_HOURS)
    at = at_hour(rng, hour)
    r = float(rng.random())
    rate = room_rate(rng)
    status = STATUSES[pick(rng, [20, 40, 10, 25, 5])]
    before = {"status": status, "rate": rate, "floor": int(rng.integers(1, 8)), "notes": ""}
    if r < 0.05:
        after = {"status": "clean", "rate": rate, "floor": before["floor"], "notes": ""}
        return {"collection": "rooms", "kind": "create", "before": None, "after": after, "at_ms": at}
    after = dict(before)
    if r < 0.75:
        nxt = NEXT_STATUS[status]
        after["status"] = list(nxt)[pick(rng, list(nxt.values()))]
    elif r < 0.90:
        after["rate"] = round(rate * math.exp(float(rng.normal(0.0, 0.06))), 0)
    else:
        after["notes"] = "late checkout"
    return {"collection": "rooms", "kind": "patch", "before": before, "after": after, "at_ms": at}


def sale_write(rng):
    """A normal sale (or refund) at the restaurant or bar."""
    hour = pick(rng, SALE_HOURS)
    at = at_hour(rng, hour)
    items = int(rng.integers(1, 9)) if rng.random() < 0.9 else int(rng.integers(9, 25))
    unit = math.exp(float(rng.normal(math.log(14.0), 0.35)))
    subtotal = items * unit
    discount = 0.0
    if rng.random() < 0.15:
        discount = subtotal * float(rng.choice([0.05, 0.1, 0.15, 0.2]))
    total = round(subtotal - discount, 2)
    discount = round(discount, 2)
    if rng.random() < 0.03:
        # A refund of one or two items, during opening hours.
        items = int(rng.integers(1, 3))
        total = -round(items * unit, 2)
        discount = 0.0
        at = at_hour(rng, int(rng.integers(8, 22)))
    after = {"total": total, "items": items, "discount": discount, "method": "card"}
    return {"collection": "sales", "kind": "append", "before": None, "after": after, "at_ms": at}


def writes(rng, n):
    out = []
    for _ in range(n):
        out.append(room_write(rng) if rng.random() < 0.5 else sale_write(rng))
    return out


# --- the featurizer (the Rust one in inference/src/featurizer.rs mirrors it) ---


def num(fields, name):
    """A field as a number, or None (missing, null, non-numeric, bool)."""
    if fields is None:
        return None
    v = fields.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def status_of(fields):
    if fields is None:
        return NONE
    v = fields.get("status")
    return v if isinstance(v, str) and v in STATUSES else NONE


def raw_features(w, tables):
    """The raw (not yet standardised) features of one write, or None if not scored.

    A feature that cannot be computed (a missing or non-numeric field) is None:
    it takes the feature's default, its training mean.
    """
    before, after = w["before"], w["after"]
    if after is None or w["kind"] not in KINDS.get(w["collection"], ()):
        return None
    hour = hour_at(w["at_ms"])
    if w["collection"] == "rooms":
        ra, rb = num(after, "rate"), num(before, "rate")
        # The change is scored, not the entity: a rate only counts when written.
        log_rate = None
        if ra is not None and (before is None or ra != rb):
            log_rate = math.log1p(max(ra, 0.0))
        change = 0.0
        if ra is not None and rb is not None:
            change = math.log1p(max(ra, 0.0)) - math.log1p(max(rb, 0.0))
        token = status_of(before) + ">" + status_of(after)
        status_nll = tables["rooms.status_nll"].get(token, tables["rooms.status_nll_unseen"]) if tables else token
        hour_nll = tables["rooms.hour_nll"][hour] if tables else hour
        return {"rooms.log_rate": log_rate, "rooms.log_rate_change": change, "rooms.status_nll": status_nll, "rooms.hour_nll": hour_nll}
    if w["collection"] == "sales":
        total, items, discount = num(after, "total"), num(after, "items"), num(after, "discount")
        items_f = None if items is None else math.log1p(max(items, 0.0))
        total_f = None if total is None else math.log1p(abs(total))
        disc = max(discount or 0.0, 0.0)
        frac = 0.0
        if total is not None and abs(total) + disc > 0.0:
            frac = disc / (abs(total) + disc)
        refund = 1.0 if total is not None and total < 0.0 else 0.0
        hour_nll = tables["sales.hour_nll"][hour] if tables else hour
        return {"sales.log_total": total_f, "sales.log_items": items_f, "sales.discount_frac": frac, "sales.refund": refund, "sales.hour_nll": hour_nll}
    return None


def vector(raw, spec):
    """Standardised features in FEATURES order: 0 for the other collection's block."""
    x = [0.0] * WIDTH
    for i, name in enumerate(FEATURES):
        if name not in raw:
            continue
        f = spec["features"][i]
        v = raw[name]
        if v is None:
            v = f["default"]
        x[i] = (v - f["mean"]) / f["std"]
    return x


# --- fitting ---------------------------------------------------------------


def nll_table(counts, vocab_size, alpha=0.5):
    total = sum(counts.values())
    denom = total + alpha * vocab_size
    return {k: sig6(-math.log((c + alpha) / denom)) for k, c in counts.items()}, sig6(-math.log(alpha / denom))


def fit(train):
    # Rarity tables: transition tokens and hours, from counts (add-half smoothing).
    tokens = {}
    room_hours = [0] * 24
    sale_hours = [0] * 24
    for w in train:
        raw = raw_features(w, None)
        if raw is None:
            continue
        if w["collection"] == "rooms":
            tokens[raw["rooms.status_nll"]] = tokens.get(raw["rooms.status_nll"], 0) + 1
            room_hours[raw["rooms.hour_nll"]] += 1
        else:
            sale_hours[raw["sales.hour_nll"]] += 1
    vocab = (len(STATUSES) + 1) ** 2
    status_nll, unseen = nll_table(tokens, vocab)
    tables = {
        "rooms.status_nll": dict(sorted(status_nll.items())),
        "rooms.status_nll_unseen": unseen,
        "rooms.hour_nll": [sig6(-math.log((c + 0.5) / (sum(room_hours) + 12.0))) for c in room_hours],
        "sales.hour_nll": [sig6(-math.log((c + 0.5) / (sum(sale_hours) + 12.0))) for c in sale_hours],
    }
    # Means and spreads of each feature, per collection (None = not computed, skipped).
    cols = {name: [] for name in FEATURES}
    for w in train:
        raw = raw_features(w, tables)
        for k, v in raw.items():
            if v is not None:
                cols[k].append(v)
    features = []
    for name in FEATURES:
        a = np.asarray(cols[name], float)
        mean = sig6(a.mean())
        # A floor on the spread: a feature that hardly varies in training
        # (a rate rarely changes) must not turn noise into a huge score.
        std = sig6(max(a.std(), 0.05))
        features.append({"name": name, "mean": mean, "std": std, "default": mean})
    spec = {"features": features}
    # Whitening per block: inverse Cholesky factor of each block's correlation.
    w_full = np.zeros((WIDTH, WIDTH))
    for coll, idx in (("rooms", range(0, 4)), ("sales", range(4, WIDTH))):
        idx = list(idx)
        xs = np.asarray([vector(raw_features(w, tables), spec) for w in train if w["collection"] == coll], float)[:, idx]
        cov = (xs.T @ xs) / len(xs)
        cov += np.eye(len(idx)) * 1e-3
        lower = np.linalg.cholesky(cov)
        # x @ W = z with W = inv(L)^T, so that z has identity covariance.
        w_block = np.linalg.inv(lower).T
        for a, i in enumerate(idx):
            for b, j in enumerate(idx):
                w_full[i, j] = sig6(w_block[a, b])
    return tables, spec, w_full.astype(np.float32)


def score(x, w):
    """The graph's arithmetic in float64 from the float32 weights."""
    z = np.asarray(x, np.float32).astype(np.float64) @ w.astype(np.float64)
    return (z * z).mean(axis=1)


def ort_scores(body, x, w):
    """onnxruntime's scores of rows x, checked against numpy's float64 ones."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(body, opts, providers=["CPUExecutionProvider"])
    got = sess.run(["score"], {"features": np.asarray(x, np.float32)})[0].astype(np.float64)
    want = score(x, w)
    err = np.abs(got - want) / np.maximum(1.0, np.abs(want))
    assert float(err.max()) < 1e-5, f"onnxruntime and numpy differ by {err.max()}"
    return [sig6(v) for v in got]


# --- outputs ----------------------------------------------------------------


def model_bytes(w):
    x = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", WIDTH])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])
    weights = helper.make_tensor("whiten", TensorProto.FLOAT, [WIDTH, WIDTH], w.flatten().tolist())
    nodes = [
        helper.make_node("MatMul", ["features", "whiten"], ["z"], name="whiten"),
        helper.make_node("Mul", ["z", "z"], ["z2"], name="square"),
        helper.make_node("ReduceMean", ["z2"], ["score"], name="mean", axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(nodes, "tidesync_anomaly", [x], [y], initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tidesync-models-train")
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString(deterministic=True)


def dumps(obj):
    return json.dumps(obj, indent=1, sort_keys=True) + "\n"


def planted(rng):
    """Hand-made normal writes and planted anomalies, with their labels."""
    at = lambda h, m=0: T0 + ((40 * 24 + h) * 60 + m) * 60_000  # noqa: E731
    room = {"status": "occupied", "rate": 120, "floor": 2, "notes": ""}
    sale = {"total": 42.5, "items": 3, "discount": 0, "method": "card"}
    r = []

    def add(name, label, coll, kind, before, after, at_ms):
        r.append({"name": name, "label": label, "input": {"collection": coll, "entity_id": name, "kind": kind, "before": before, "after": after, "at_ms": at_ms}})

    add("room_cleaned", "normal", "rooms", "patch", dict(room, status="dirty"), dict(room, status="clean"), at(10, 15))
    add("room_checked_in", "normal", "rooms", "patch", dict(room, status="inspected"), dict(room, status="occupied"), at(15, 5))
    add("room_checked_out", "normal", "rooms", "patch", room, dict(room, status="dirty"), at(11))
    add("room_rate_up_5pc", "normal", "rooms", "patch", room, dict(room, rate=126), at(9, 30))
    add("room_note", "normal", "rooms", "patch", room, dict(room, notes="late checkout"), at(8, 40))
    add("room_created", "normal", "rooms", "create", None, dict(room, status="clean"), at(14))
    add("suite_rate_down", "normal", "rooms", "patch", dict(room, rate=320), dict(room, rate=305), at(16))
    add("sale_lunch", "normal", "sales", "append", None, sale, at(13, 10))
    add("sale_dinner_discount", "normal", "sales", "append", None, {"total": 76.5, "items": 6, "discount": 8.5, "method": "card"}, at(20, 30))
    add("sale_breakfast", "normal", "sales", "append", None, {"total": 18.0, "items": 1, "discount": 0, "method": "cash"}, at(8, 5))
    add("sale_refund_lunch", "normal", "sales", "append", None, {"total": -14.0, "items": 1, "discount": 0, "method": "card"}, at(13, 40))
    add("rate_typo_12000", "anomaly", "rooms", "patch", room, dict(room, rate=12000), at(10))
    add("rate_typo_new_room", "anomaly", "rooms", "create", None, dict(room, status="clean", rate=12000), at(10))
    add("rate_typo_1_20", "anomaly", "rooms", "patch", room, dict(room, rate=1.2), at(10))
    add("out_of_order_to_occupied", "anomaly", "rooms", "patch", dict(room, status="out_of_order"), dict(room, status="occupied"), at(15))
    add("dirty_to_occupied", "anomaly", "rooms", "patch", dict(room, status="dirty"), dict(room, status="occupied"), at(15))
    add("sale_total_100x", "anomaly", "sales", "append", None, dict(sale, total=4250.0), at(13, 10))
    add("refund_3am_big", "anomaly", "sales", "append", None, {"total": -900.0, "items": 2, "discount": 0, "method": "cash"}, at(3, 10))
    add("discount_95pc", "anomaly", "sales", "append", None, {"total": 4.0, "items": 6, "discount": 76.0, "method": "card"}, at(19))
    # Odd input: must score (defaults) without failing; labels are not asserted.
    add("odd_rate_string", "odd", "rooms", "patch", room, dict(room, rate="120"), at(10))
    add("odd_sale_empty", "odd", "sales", "append", None, {}, at(12))
    add("odd_status_unknown", "odd", "rooms", "patch", room, dict(room, status="haunted"), at(12))
    return r


def build(out):
    rng = np.random.default_rng(SEED)
    train = writes(rng, 20_000)
    held = writes(np.random.default_rng(SEED + 1), 5_000)
    tables, spec, w = fit(train)
    xs_held = np.asarray([vector(raw_features(x, tables), spec) for x in held], float)
    s_held = score(xs_held, w)
    threshold = sig6(float(np.quantile(s_held, THRESHOLD_QUANTILE)) * THRESHOLD_MARGIN)
    fp = float((s_held >= threshold).mean())
    body = model_bytes(w)
    sha = hashlib.sha256(body).hexdigest()
    features = {
        "about": "Featurizer of models/anomaly.onnx (issue 18); written by models/train.py, do not edit.",
        "model_sha256": sha,
        "model_id": sha[:16],
        "input": "features",
        "output": "score",
        "width": WIDTH,
        "features": spec["features"],
        "collections": {
            "rooms": {"fields": ["rate", "status"], "kinds": KINDS["rooms"], "features": ROOM_FEATURES},
            "sales": {"fields": ["total", "items", "discount"], "kinds": KINDS["sales"], "features": SALE_FEATURES},
        },
        "statuses": STATUSES,
        "tables": tables,
        "utc_offset_minutes": UTC_OFFSET_MINUTES,
        "threshold": threshold,
        "threshold_rule": f"{THRESHOLD_MARGIN} x the {THRESHOLD_QUANTILE} quantile of held-out normal scores",
        "held_out": {"writes": len(held), "flagged_fraction": round(fp, 6)},
    }
    records = planted(rng)
    for rec in records:
        x = vector(raw_features(rec["input"], tables), spec)
        rec["features"] = [sig6(v) for v in x]
    for rec, s in zip(records, ort_scores(body, [r["features"] for r in records], w)):
        rec["score"] = s
    # The fixed batch: 256 held-out writes (normal and planted, featurized).
    batch = [[sig6(v) for v in row] for row in xs_held[:248]] + [rec["features"] for rec in records[11:19]]
    vectors = {
        "about": "Test vectors of models/anomaly.onnx; written by models/train.py, checked against onnxruntime by models/check.sh.",
        "model_sha256": sha,
        "threshold": threshold,
        "batch": batch,
        "batch_scores": ort_scores(body, batch, w),
        "records": records,
    }
    with open(os.path.join(out, "anomaly.onnx"), "wb") as fh:
        fh.write(body)
    with open(os.path.join(out, "anomaly.onnx.sha256"), "w") as fh:
        fh.write(f"{sha}  anomaly.onnx\n")
    with open(os.path.join(out, "anomaly.features.json"), "w") as fh:
        fh.write(dumps(features))
    with open(os.path.join(out, "vectors.json"), "w") as fh:
        fh.write(dumps(vectors))
    return sha, threshold, fp, records


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--check", action="store_true", help="retrain in a temp dir and compare bytes")
    p.add_argument("--out", default=HERE)
    a = p.parse_args()
    if not a.check:
        sha, thr, fp, recs = build(a.out)
        print(f"anomaly.onnx {sha[:16]} threshold {thr} held-out flagged {fp:.4f}")
        for r in recs:
            flag = "FLAG" if r["score"] >= thr else "    "
            print(f"  {flag} {r['label']:8} {r['score']:12.4f} {r['name']}")
        return 0
    tmp = tempfile.mkdtemp(prefix="tidesync-models-")
    try:
        build(tmp)
        bad = []
        for f in FILES:
            with open(os.path.join(tmp, f), "rb") as x, open(os.path.join(HERE, f), "rb") as y:
                if x.read() != y.read():
                    bad.append(f)
        if bad:
            print("train.py --check: retrained bytes differ from the committed ones: " + ", ".join(bad), file=sys.stderr)
            return 1
        print("train.py --check: retrained " + ", ".join(FILES) + ": identical")
        return 0
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
