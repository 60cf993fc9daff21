"""FTRL-Proximal with progressive validation on hashed click-through-style data.

Data: 20 categorical fields (cardinalities 4 .. 300,000, skewed value frequencies) hashed into
2^18 dimensions, labels drawn from a known logistic generating model over the (field, value)
pairs, so the best achievable log loss (the generating model's) is printed too. Fixed seed.

Runs, in one process, each predicting every row before learning from it:

* flowlearn ``progressive_validation(OnlineLogisticRegression(global_batch_size=1))`` from an
  Arrow table with a sparse vector column (the exact sequential algorithm), and with Flink ML's
  default ``global_batch_size=32``;
* a straightforward per-example Numba loop of the paper's Algorithm 1 over the CSR arrays (the
  limit reference; no Arrow, no validation);
* River ``LogisticRegression(optimizer=optim.FTRLProximal(...))`` on the first ``--river-rows`` rows
  (inputs prepared as dicts beforehand, not timed), rows/s extrapolated;
* Vowpal Wabbit (``--ftrl``) through its Python API on a subsample, when ``vowpalwabbit`` is installed.

Timings are the best of ``--repeat`` runs (the machine may be shared). Targets (issue 4):
>= 1,000,000 rows/s on one core, >= 50x River, progressive log loss within 0.5% of the
sequential per-example algorithm.

    .venv/bin/python benchmarks/bench_ftrl.py [--rows 2000000] [--river-rows 20000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numba  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import scipy.sparse as sps  # noqa: E402

import flowlearn as fl  # noqa: E402
from flowlearn.classification.ftrl import OnlineLogisticRegression  # noqa: E402
from flowlearn.evaluation.progressive import progressive_validation  # noqa: E402

BITS = 18
D = 2 ** BITS
FIELDS = 20
ALPHA, BETA, L1, L2 = 0.1, 1.0, 0.0, 1.0


def make_data(n: int, seed: int = 42):
    """CSR features (n x 2^18, one-hot per field after hashing), labels and true probabilities."""
    rng = np.random.default_rng(seed)
    cards = np.geomspace(4, 300_000, FIELDS).astype(np.int64)
    idx = np.empty((n, FIELDS), dtype=np.uint64)
    margin = np.full(n, -1.2)
    for f, card in enumerate(cards):
        # skewed value frequencies: value = floor(card * u^3)
        v = np.minimum((card * rng.random(n) ** 3).astype(np.int64), card - 1)
        w_field = rng.normal(0.0, 0.6, size=card)  # the generating model's weight of each value
        margin += w_field[v]
        key = (v.astype(np.uint64) + np.uint64(f) * np.uint64(1_000_003)) * np.uint64(0x9E3779B97F4A7C15)
        idx[:, f] = key >> np.uint64(64 - BITS)  # multiplicative hashing into 2^18 buckets
    p_true = 1.0 / (1.0 + np.exp(-margin))
    y = (rng.random(n) < p_true).astype(np.float64)
    idx = np.sort(idx.astype(np.int32), axis=1)
    X = sps.csr_matrix((np.ones(n * FIELDS), idx.ravel(), np.arange(0, n * FIELDS + 1, FIELDS, dtype=np.int64)),
                       shape=(n, D))
    X.sum_duplicates()  # two fields hashed to one bucket in a row add up
    return X, y, p_true


def log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


@numba.njit(cache=True)
def reference_loop(indptr, indices, data, y, alpha, beta, l1, l2):
    """Algorithm 1 of McMahan et al. (2013), per example, with an always-1 bias feature (index D)."""
    d = D + 1
    z = np.zeros(d)
    n = np.zeros(d)
    w = np.zeros(d)
    loss = 0.0
    for r in range(len(y)):
        m = w[D]
        for k in range(indptr[r], indptr[r + 1]):
            m += w[indices[k]] * data[k]
        p = 1.0 / (1.0 + math.exp(-m))
        q = min(max(p, 1e-15), 1 - 1e-15)
        loss += -math.log(q) if y[r] == 1.0 else -math.log1p(-q)
        gl = p - y[r]
        for k in range(indptr[r], indptr[r + 1] + 1):
            if k < indptr[r + 1]:
                i = indices[k]
                g = gl * data[k]
            else:
                i = D
                g = gl
            sigma = (math.sqrt(n[i] + g * g) - math.sqrt(n[i])) / alpha
            z[i] += g - sigma * w[i]
            n[i] += g * g
            if abs(z[i]) <= l1:
                w[i] = 0.0
            else:
                w[i] = -(z[i] - math.copysign(l1, z[i])) / ((beta + math.sqrt(n[i])) / alpha + l2)
    return loss / len(y), w


def best_of(repeat, fn):
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def run_river(X: sps.csr_matrix, y: np.ndarray):
    from river import linear_model, optim

    rows = [({int(i): 1.0 for i in X.indices[X.indptr[r]:X.indptr[r + 1]]} | {"bias": 1.0}, bool(y[r]))
            for r in range(X.shape[0])]
    model = linear_model.LogisticRegression(optimizer=optim.FTRLProximal(alpha=ALPHA, beta=BETA, l1=L1, l2=L2),
                                            intercept_lr=0.0)
    p = np.empty(len(rows))
    t0 = time.perf_counter()
    for r, (x, yy) in enumerate(rows):
        p[r] = model.predict_proba_one(x)[True]
        model.learn_one(x, yy)
    return time.perf_counter() - t0, log_loss(p, y)


def run_vw(X: sps.csr_matrix, y: np.ndarray):
    import vowpalwabbit

    ws = vowpalwabbit.Workspace(f"--loss_function logistic --link logistic --ftrl --ftrl_alpha {ALPHA} "
                                f"--ftrl_beta {BETA} --l1 {L1} --l2 {L2} -b {BITS} --quiet")
    lines = [("1" if y[r] else "-1") + " |f " + " ".join(map(str, X.indices[X.indptr[r]:X.indptr[r + 1]]))
             for r in range(X.shape[0])]
    p = np.empty(len(lines))
    t0 = time.perf_counter()
    for r, line in enumerate(lines):
        ex = ws.parse(line)
        ws.learn(ex)
        p[r] = ex.get_simplelabel_prediction()
        ws.finish_example(ex)
    dt = time.perf_counter() - t0
    ws.finish()
    return dt, log_loss(p, y)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--river-rows", type=int, default=20_000)
    ap.add_argument("--vw-rows", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    n = args.rows

    t0 = time.perf_counter()
    X, y, p_true = make_data(n)
    table = pa.table({"features": fl.linalg.from_csr(X), "label": y})
    print(f"data: {n:,} rows, {FIELDS} hashed fields -> 2^{BITS} dims, {X.nnz / n:.2f} nonzeros/row, "
          f"CTR {y.mean():.3f}; generated in {time.perf_counter() - t0:.1f} s")
    print(f"FTRL alpha={ALPHA} beta={BETA} l1={L1} l2={L2}, intercept as an always-1 feature; best of {args.repeat}")
    bayes = float(-np.mean(p_true * np.log(p_true) + (1 - p_true) * np.log1p(-p_true)))

    # warm-up: compile / load the numba kernels outside the timings
    warm = table.slice(0, 1000)
    for b in (1, 32):
        progressive_validation(OnlineLogisticRegression(global_batch_size=b), warm)
    reference_loop(X.indptr[:11].astype(np.int64), X.indices, X.data, y[:10], ALPHA, BETA, L1, L2)

    def ours(batch):
        est = OnlineLogisticRegression(global_batch_size=batch, alpha=ALPHA, beta=BETA,
                                       reg=L1 + L2, elastic_net=L1 / (L1 + L2) if L1 + L2 else 0.0)
        return progressive_validation(est, table, metrics=["log_loss", "auc"])

    indptr = X.indptr.astype(np.int64)
    t_ref, (ll_ref, _) = best_of(args.repeat, lambda: reference_loop(indptr, X.indices, X.data, y,
                                                                      ALPHA, BETA, L1, L2))
    t_1, res_1 = best_of(args.repeat, lambda: ours(1))
    t_32, res_32 = best_of(args.repeat, lambda: ours(32))

    results = [
        ("flowlearn FTRL, global_batch_size=1", n, t_1, res_1["log_loss"]),
        ("flowlearn FTRL, global_batch_size=32", n, t_32, res_32["log_loss"]),
        ("per-example Numba loop (reference)", n, t_ref, ll_ref),
    ]
    river_rate = None
    try:
        nr = min(args.river_rows, n)
        t_r, ll_r = run_river(X[:nr], y[:nr])
        river_rate = nr / t_r
        results.append((f"River LogisticRegression+FTRLProximal ({nr:,} rows)", nr, t_r, ll_r))
    except ImportError:
        print("river is not installed: skipped")
    try:
        nv = min(args.vw_rows, n)
        t_v, ll_v = run_vw(X[:nv], y[:nv])
        results.append((f"Vowpal Wabbit --ftrl, Python API ({nv:,} rows)", nv, t_v, ll_v))
    except ImportError:
        print("vowpalwabbit is not installed: skipped")

    print()
    print(f"{'':56s} {'rows/s':>12s} {'x River':>9s} {'log loss':>9s}")
    for name, rows, sec, ll in results:
        rate = rows / sec
        ratio = f"{rate / river_rate:9.1f}" if river_rate else f"{'-':>9s}"
        print(f"{name:56s} {rate:12,.0f} {ratio} {ll:9.5f}")
    if river_rate:
        sub = progressive_validation(OnlineLogisticRegression(global_batch_size=1, alpha=ALPHA, beta=BETA, reg=L1 + L2),
                                     table.slice(0, min(args.river_rows, n)), metrics=["log_loss"])
        print(f"{'(flowlearn, global_batch_size=1, on River rows)':56s} {'':12s} {'':9s} {sub['log_loss']:9.5f}")
    print(f"{'generating model (best achievable)':56s} {'':12s} {'':9s} {bayes:9.5f}")
    print(f"AUC: global_batch_size=1 {res_1['auc']:.4f}, global_batch_size=32 {res_32['auc']:.4f}")

    rate_1 = n / t_1
    print()
    print(f"target >= 1,000,000 rows/s (global_batch_size=1): {rate_1:,.0f} "
          f"[{'met' if rate_1 >= 1e6 else 'NOT met'}]")
    if river_rate:
        print(f"target >= 50x River: {rate_1 / river_rate:.0f}x [{'met' if rate_1 / river_rate >= 50 else 'NOT met'}]")
    for label, ll in (("global_batch_size=1", res_1["log_loss"]), ("global_batch_size=32", res_32["log_loss"])):
        rel = abs(ll - ll_ref) / ll_ref
        print(f"log loss within 0.5% of the per-example algorithm ({label}): {100 * rel:.4f}% "
              f"[{'met' if rel <= 0.005 else 'NOT met'}]")
    print(f"flowlearn / per-example Numba loop speed: {t_ref / t_1:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
