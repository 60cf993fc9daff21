"""Cold start: a fresh process imports the library, loads a saved model and predicts one row.

The same model in each library: standard scaling then logistic regression, fitted on scikit-learn's
breast-cancer data (30 features). flowlearn: a saved ``PipelineModel`` (JSON + Arrow IPC) served by
``fl.LocalPredictor``; scikit-learn: a ``Pipeline`` in a joblib pickle, ``predict_proba`` of a
one-row array; River: a pickled ``StandardScaler | LogisticRegression`` (learned row by row),
``predict_proba_one`` of a dict. Every timing is taken inside a new Python process (median of
``--repeats`` processes), so the interpreter start itself is not counted; the Numba cache is warm
(the first run of a new flowlearn install compiles and caches its kernels once).

    python benchmarks/bench_cold_start.py --repeats 5
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import textwrap

CHILD = {
    "flowlearn": """
        import time
        t0 = time.perf_counter()
        import flowlearn as fl
        t1 = time.perf_counter()
        predictor = fl.LocalPredictor(os.path.join(d, "flowlearn"))
        t2 = time.perf_counter()
        p = predictor.predict(row)["raw_prediction"][1]
        t3 = time.perf_counter()
    """,
    "scikit-learn": """
        import time
        t0 = time.perf_counter()
        import joblib, numpy as np, sklearn
        t1 = time.perf_counter()
        model = joblib.load(os.path.join(d, "sklearn.joblib"))
        t2 = time.perf_counter()
        p = model.predict_proba(np.array([row["features"]]))[0, 1]
        t3 = time.perf_counter()
    """,
    "River": """
        import time
        t0 = time.perf_counter()
        import river, river.compose, river.linear_model, river.preprocessing
        t1 = time.perf_counter()
        with open(os.path.join(d, "river.pkl"), "rb") as f:
            model = pickle.load(f)
        t2 = time.perf_counter()
        p = model.predict_proba_one({f"x{j}": v for j, v in enumerate(row["features"])})[True]
        t3 = time.perf_counter()
    """,
}

PRELUDE = """
import json, os, pickle, sys
d = sys.argv[1]
row = json.load(open(os.path.join(d, "row.json")))
"""
EPILOGUE = """
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "first_prediction": t3 - t2, "p": float(p)}))
"""


def prepare(d: str) -> None:
    import joblib
    import numpy as np
    from river import compose, linear_model, preprocessing
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import flowlearn as fl

    x, y = load_breast_cancer(return_X_y=True)
    t = fl.table({"features": x, "label": y.astype(np.float64)})
    fl.Pipeline([fl.feature.StandardScaler(input_col="features", output_col="scaled", with_mean=True),
                 fl.classification.LogisticRegression(features_col="scaled", reg=0.01)]).fit(t).save(
        os.path.join(d, "flowlearn"))
    joblib.dump(make_pipeline(StandardScaler(), LogisticRegression(C=0.2, max_iter=1000)).fit(x, y),
                os.path.join(d, "sklearn.joblib"))
    river = compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression())
    for xi, yi in zip(x, y):
        river.learn_one({f"x{j}": v for j, v in enumerate(xi)}, bool(yi))
    with open(os.path.join(d, "river.pkl"), "wb") as f:
        pickle.dump(river, f)
    with open(os.path.join(d, "row.json"), "w") as f:
        json.dump({"features": x[0].tolist()}, f)


def child(name: str, d: str) -> dict:
    code = PRELUDE + textwrap.dedent(CHILD[name]) + EPILOGUE
    out = subprocess.run([sys.executable, "-c", code, d], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="fresh processes per library (median reported)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        prepare(d)
        child("flowlearn", d)   # warms the Numba cache if this install never ran the kernels
        print(f"{'library':<14}{'import s':>10}{'load s':>10}{'1st predict s':>15}{'total s':>10}")
        for name in CHILD:
            runs = [child(name, d) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in ("import", "load", "first_prediction")}
            total = statistics.median(r["import"] + r["load"] + r["first_prediction"] for r in runs)
            print(f"{name:<14}{med['import']:>10.3f}{med['load']:>10.3f}{med['first_prediction']:>15.4f}"
                  f"{total:>10.3f}")


if __name__ == "__main__":
    main()
