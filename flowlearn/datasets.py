"""Synthetic data with a known generating model, for demos, tests and benchmarks.

``ClickStream`` draws click-through-style events: categorical fields (ad, site, device, ...)
and a few numeric ones, labelled by a logistic model whose weights are known, so the best
achievable log loss of any model is known too. ``drift`` redraws that fraction of the categorical
weights after ``drift_at`` events, the way user behaviour shifts after a batch model was
trained; an online learner that keeps training recovers, a frozen batch model does not.

Example:
    >>> gen = ClickStream(seed=0)
    >>> t = gen.table(1000)
    >>> sorted(t.column_names)[:3], t.num_rows
    (['ad', 'app', 'banner_pos'], 1000)
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["ClickStream"]

_FIELDS = {"site": 40, "app": 60, "ad": 500, "device": 8, "banner_pos": 7, "hour": 24, "campaign": 120,
           "region": 30}
_NUMERIC = ["price", "position_score", "user_age_days"]


class ClickStream:
    """A stream of click events with known true click probabilities."""

    categorical = list(_FIELDS)
    numeric = list(_NUMERIC)

    def __init__(self, seed: int = 0, drift_at: int | None = None, drift: float = 0.5,
                 event_seed: int | None = None) -> None:
        rng = np.random.default_rng(seed)
        # the generating model comes from `seed`; the events drawn from it from `event_seed`, so two
        # streams of the same world (say, training traffic and scored traffic) differ in their events
        self._rng = np.random.default_rng(seed + 1 if event_seed is None else event_seed)
        self._w = {f: rng.normal(0, 0.6, k) for f, k in _FIELDS.items()}
        self._w_after = {f: np.where(rng.random(k) < drift, rng.normal(0, 0.9, k), w) for (f, k), w in
                         zip(_FIELDS.items(), self._w.values())}
        self._num_w = rng.normal(0, 0.5, len(_NUMERIC))
        self._bias = -1.6
        self._drift_at = drift_at
        self._emitted = 0

    def _draw(self, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        rng = self._rng
        cols: dict[str, np.ndarray] = {}
        idx = np.arange(self._emitted, self._emitted + n)
        after = np.zeros(n, dtype=bool) if self._drift_at is None else idx >= self._drift_at
        z = np.full(n, self._bias)
        for f, k in _FIELDS.items():
            # skewed category popularity, as real traffic has
            c = np.minimum((rng.pareto(1.2, n) * k / 8).astype(np.int64), k - 1)
            cols[f] = c
            z += np.where(after, self._w_after[f][c], self._w[f][c])
        num = np.c_[rng.gamma(2.0, 1.0, n), rng.normal(0, 1, n), rng.exponential(300.0, n)]
        z += ((num - [2.0, 0.0, 300.0]) / [1.4, 1.0, 300.0]) @ self._num_w
        self._emitted += n
        return cols | {"_num": num}, 1.0 / (1.0 + np.exp(-z))

    def table(self, n: int) -> pa.Table:
        """The next ``n`` events: categorical fields as strings, numeric fields, ``label``,
        and ``true_probability`` (the generating model's click probability)."""
        cols, p = self._draw(n)
        out = {f: pa.array(np.char.add(f"{f[:2]}", cols[f].astype(str))) for f in _FIELDS}
        for j, name in enumerate(_NUMERIC):
            out[name] = pa.array(cols["_num"][:, j])
        out["label"] = pa.array((self._rng.random(n) < p).astype(np.float64))
        out["true_probability"] = pa.array(p)
        return pa.table(out)

    @staticmethod
    def best_log_loss(t: pa.Table) -> float:
        """Log loss of the generating model itself on ``t`` (what no model can beat on average)."""
        y = t.column("label").to_numpy()
        p = np.clip(t.column("true_probability").to_numpy(), 1e-15, 1 - 1e-15)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
