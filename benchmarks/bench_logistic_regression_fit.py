"""Benchmark: flowlearn LogisticRegression.fit vs scikit-learn (lbfgs) on the same objective.

Synthetic dense data (fixed seed) from a known logistic model: x ~ N(0, I_d),
w_true ~ N(0, 9/d), b_true = 0.5, y ~ Bernoulli(sigmoid(w_true . x + b_true)).

Both minimize  mean log loss + reg/2 * |w|^2  (intercept unpenalized):
flowlearn ``LogisticRegression(reg=reg, tol=tol)`` and scikit-learn
``LogisticRegression(C=1/(reg*n), tol=tol)`` (lbfgs; sklearn's tol is the same bound on the
largest gradient entry of the mean-scaled objective). Both are timed in this process, alternating,
``--repeat`` times each; flowlearn's time starts from an Arrow table (what users pass), sklearn's
from a NumPy array. A small warm-up fit loads flowlearn's Numba kernels first (reported apart).

Run:  .venv/bin/python benchmarks/bench_logistic_regression_fit.py [--rows 1000000] [--repeat 3]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LogisticRegression as SkLogisticRegression

import flowlearn as fl


def objective(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float, reg: float) -> float:
    """mean log loss + reg/2 |w|^2, computed here independently of both libraries."""
    z = X @ w + b
    return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * reg * (w @ w))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--reg", type=float, default=1e-4)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    n, d = args.rows, args.dim

    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((n, d))
    w_true = rng.standard_normal(d) * (3.0 / np.sqrt(d))
    y = (rng.random(n) < expit(X @ w_true + 0.5)).astype(np.float64)
    table = fl.table({"features": X, "label": y})
    print(f"data: {n} x {d} dense, positives {y.mean():.3f}, reg={args.reg}, tol={args.tol}, "
          f"max_iter={args.max_iter}")

    t0 = time.perf_counter()
    fl.classification.LogisticRegression(reg=args.reg).fit(fl.table({"features": X[:1000], "label": y[:1000]}))
    print(f"flowlearn warm-up (Numba kernels load/compile, 1000 rows): {time.perf_counter() - t0:.3f} s")

    est = fl.classification.LogisticRegression(reg=args.reg, tol=args.tol, max_iter=args.max_iter)
    sk = SkLogisticRegression(C=1.0 / (args.reg * n), tol=args.tol, max_iter=args.max_iter)
    t_fl, t_sk = [], []
    model = None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        model = est.fit(table)
        t_fl.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        sk.fit(X, y)
        t_sk.append(time.perf_counter() - t0)

    md = model.get_model_data()[0]
    w_fl = np.asarray(md.column("coefficient")[0].as_py())
    b_fl = float(md.column("intercept")[0].as_py())
    p_fl = fl.linalg.to_numpy(model.transform(table).column("raw_prediction"))[:, 1]
    p_sk = sk.predict_proba(X)[:, 1]
    f_fl = objective(X, y, w_fl, b_fl, args.reg)
    f_sk = objective(X, y, sk.coef_[0], float(sk.intercept_[0]), args.reg)

    med_fl, med_sk = statistics.median(t_fl), statistics.median(t_sk)
    print(f"flowlearn fit  : median {med_fl:.3f} s  (runs {', '.join(f'{t:.3f}' for t in t_fl)})")
    print(f"sklearn lbfgs  : median {med_sk:.3f} s  (runs {', '.join(f'{t:.3f}' for t in t_sk)}), "
          f"n_iter={int(sk.n_iter_[0])}")
    print(f"ratio flowlearn/sklearn (median): {med_fl / med_sk:.2f}x   (best-of: {min(t_fl) / min(t_sk):.2f}x)")
    print(f"objective      : flowlearn {f_fl:.12f}  sklearn {f_sk:.12f}  diff {f_fl - f_sk:+.3e}")
    print(f"max |p_flowlearn - p_sklearn| = {np.abs(p_fl - p_sk).max():.3e}")
    print(f"max |w_flowlearn - w_true| = {np.abs(w_fl - w_true).max():.3f} (sampling noise + shrinkage)")


if __name__ == "__main__":
    main()
