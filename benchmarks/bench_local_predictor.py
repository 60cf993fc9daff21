"""LocalPredictor single-row latency and batch throughput vs River and scikit-learn.

Pipeline: assemble 8 numeric columns and scale them, index and one-hot 2 categorical
columns, assemble, logistic regression. The same pipeline is built in River
(Select | StandardScaler + Select | OneHotEncoder | LogisticRegression, predict_proba_one)
and in scikit-learn (ColumnTransformer + LogisticRegression, one-row DataFrame predict_proba).

Run:  .venv/bin/python benchmarks/bench_local_predictor.py [--rows 20000]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

import flowlearn as fl

NUMS = [f"n{i}" for i in range(8)]
CATS = ["c0", "c1"]
CARD = [12, 30]


def make_data(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({c: rng.normal(loc=i, scale=1 + i, size=n) for i, c in enumerate(NUMS)})
    for c, k in zip(CATS, CARD):
        df[c] = np.array([f"{c}_v{j}" for j in range(k)])[rng.integers(0, k, n)]
    w = rng.normal(size=8)
    z = ((df[NUMS].to_numpy() - np.arange(8)) / (1 + np.arange(8))) @ w
    z += df["c0"].str.len().to_numpy() * 0.1 - 0.5
    df["label"] = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    return df


def flowlearn_pipeline(train: pd.DataFrame):
    f = fl.feature
    sizes = [train[c].nunique() - 1 for c in CATS]  # one-hot with drop_last
    pipe = fl.Pipeline([
        f.VectorAssembler(input_cols=NUMS, output_col="num_vec", input_sizes=[1] * len(NUMS)),
        f.StandardScaler(input_col="num_vec", output_col="num_scaled", with_mean=True),
        f.StringIndexer(input_cols=CATS, output_cols=["c0_idx", "c1_idx"], handle_invalid="keep"),
        f.OneHotEncoder(input_cols=["c0_idx", "c1_idx"], output_cols=["c0_oh", "c1_oh"], handle_invalid="keep"),
        f.VectorAssembler(input_cols=["num_scaled", "c0_oh", "c1_oh"], output_col="features",
                          input_sizes=[len(NUMS)] + [s + 1 for s in sizes]),
        fl.classification.LogisticRegression(reg=1e-4),
    ])
    return pipe.fit(fl.table(train))


def river_pipeline(train: pd.DataFrame):
    from river import compose, linear_model, preprocessing

    model = (
        (compose.Select(*NUMS) | preprocessing.StandardScaler())
        + (compose.Select(*CATS) | preprocessing.OneHotEncoder())
    ) | linear_model.LogisticRegression()
    for row, y in zip(train.drop(columns="label").to_dict("records")[:5000], train["label"][:5000]):
        model.learn_one(row, bool(y))
    return model


def sklearn_pipeline(train: pd.DataFrame):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = ColumnTransformer([("num", StandardScaler(), NUMS), ("cat", OneHotEncoder(handle_unknown="ignore"), CATS)])
    return make_pipeline(pre, LogisticRegression(max_iter=200)).fit(train[NUMS + CATS], train["label"])


def latencies(fn, rows) -> np.ndarray:
    for r in rows[:200]:  # warm-up
        fn(r)
    out = np.empty(len(rows))
    clock = time.perf_counter_ns
    for i, r in enumerate(rows):
        t0 = clock()
        fn(r)
        out[i] = clock() - t0
    return out / 1000.0  # microseconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20000, help="single-row requests per library")
    ap.add_argument("--batch-rows", type=int, default=1_000_000, help="rows for the batch throughput test")
    args = ap.parse_args()

    train = make_data(50_000, seed=1)
    test = make_data(args.rows, seed=2)
    rows = test.drop(columns="label").to_dict("records")

    flm = flowlearn_pipeline(train)
    predictor = fl.LocalPredictor(flm)
    # outputs agree with the batch path before we time anything
    batch = predictor.predict_batch(fl.table(test.iloc[:100]))
    single = [predictor.predict(r)["raw_prediction"][1] for r in rows[:100]]
    assert np.allclose(single, fl.linalg.to_numpy(batch.column("raw_prediction"))[:, 1])

    rv = river_pipeline(train)
    sk = sklearn_pipeline(train)

    res = {"flowlearn LocalPredictor.predict": latencies(predictor.predict, rows),
           "river predict_proba_one": latencies(rv.predict_proba_one, rows)}
    sk_rows = [pd.DataFrame([r]) for r in rows[:300]]
    res["scikit-learn predict_proba (1-row DataFrame)"] = latencies(sk.predict_proba, sk_rows)

    print(f"single-row latency over {args.rows} requests (us)")
    print(f"{'library':48s} {'p50':>9s} {'p99':>9s}")
    for k, v in res.items():
        print(f"{k:48s} {np.percentile(v, 50):9.1f} {np.percentile(v, 99):9.1f}")
    fl50, fl99 = (np.percentile(res["flowlearn LocalPredictor.predict"], q) for q in (50, 99))
    rv50, rv99 = (np.percentile(res["river predict_proba_one"], q) for q in (50, 99))
    sk50 = np.percentile(res["scikit-learn predict_proba (1-row DataFrame)"], 50)
    print(f"ratio p50 river/flowlearn = {rv50 / fl50:.2f}x, p99 river/flowlearn = {rv99 / fl99:.2f}x, "
          f"p50 sklearn/flowlearn = {sk50 / fl50:.0f}x")

    big = make_data(args.batch_rows, seed=3)
    big_t = fl.table(big)
    feats = big[NUMS + CATS]
    # One untimed full-size call each first: on this VM, touching fresh memory costs 2-4x more
    # system time, and whichever library ran first would pay it. Then alternate, median of 3.
    predictor.predict_batch(big_t)
    sk.predict_proba(feats)
    fl_times, sk_times = [], []
    for _ in range(3):
        t0 = time.perf_counter()
        predictor.predict_batch(big_t)
        fl_times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sk.predict_proba(feats)
        sk_times.append(time.perf_counter() - t0)
    fl_s, sk_s = float(np.median(fl_times)), float(np.median(sk_times))
    print(f"batch predict of {args.batch_rows} rows, alternating calls (median of 3): flowlearn "
          f"{args.batch_rows / fl_s:,.0f} rows/s, scikit-learn {args.batch_rows / sk_s:,.0f} rows/s, "
          f"ratio {sk_s / fl_s:.2f}x")
    # Steady state: each library called back to back, so each reuses the memory it just freed.
    steady = {}
    for name, fn in (("flowlearn", lambda: predictor.predict_batch(big_t)), ("scikit-learn", lambda: sk.predict_proba(feats))):
        fn()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        steady[name] = float(np.median(times))
    print(f"batch predict of {args.batch_rows} rows, back-to-back calls (median of 3): flowlearn "
          f"{args.batch_rows / steady['flowlearn']:,.0f} rows/s, scikit-learn "
          f"{args.batch_rows / steady['scikit-learn']:,.0f} rows/s, ratio {steady['scikit-learn'] / steady['flowlearn']:.2f}x")


if __name__ == "__main__":
    main()
