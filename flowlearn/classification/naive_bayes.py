"""Naive Bayes classification: ``NaiveBayes`` / ``NaiveBayesModel``, three model types.

* ``"categorical"`` (default; Flink ML 2.x's ``NaiveBayes``, which Flink ML calls "multinomial"):
  every element of the features vector is a categorical feature whose *values* are the
  categories (``[0.0, 2.0, 1.0]`` means feature 0 has category 0.0, feature 1 category 2.0, ...).
  For every label and feature the estimator counts how often each category occurs and applies
  Laplace (additive) smoothing; the per-feature probabilities are scikit-learn's ``CategoricalNB``
  (``alpha = smoothing``) over the categories seen. A value never seen for a feature is an error.
* ``"multinomial"`` (Spark MLlib's and scikit-learn's ``MultinomialNB``): features are
  non-negative counts or frequencies (e.g. term frequencies).
* ``"gaussian"`` (Spark MLlib's and scikit-learn's ``GaussianNB``): real-valued features, one
  normal distribution per label and feature.

Example:
    >>> import flowlearn as fl
    >>> train = fl.table({"features": [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0]],
    ...                   "label": [0.0, 0.0, 1.0, 1.0]})
    >>> model = fl.classification.NaiveBayes(smoothing=1.0).fit(train)
    >>> model.transform(train).column("prediction").to_pylist()
    [0.0, 0.0, 1.0, 1.0]
"""
from __future__ import annotations


import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sps

from flowlearn.api import Model, OnePassEstimator, RowFn
from flowlearn.data.columns import check_finite, dense_row_vector, numeric_column, vector_column, with_column
from flowlearn.feature.scalers import _merge_moments, _moments
from flowlearn.linalg import dense_vector_type, to_numpy
from flowlearn.params import HasFeaturesCol, HasLabelCol, HasPredictionCol, Param, gt_eq, in_array

__all__ = ["NaiveBayes", "NaiveBayesModel"]

MODEL_TYPES = ["categorical", "multinomial", "gaussian"]
# GaussianNB's variance smoothing: this fraction of the largest feature variance is added to every
# variance (Spark's and scikit-learn's 1e-9), so a constant feature does not divide by zero.
VAR_SMOOTHING = 1e-9

# Rows per block in the batch kernels (bounds the n x d temporaries).
_BLOCK_ELEMENTS = 1 << 20


class _NaiveBayesModelParams(HasFeaturesCol, HasPredictionCol):
    model_type = Param(str, default="categorical", validator=in_array(MODEL_TYPES),
                       doc="'categorical' (feature values are categories; Flink ML's NaiveBayes), 'multinomial' "
                           "(non-negative counts; Spark's and scikit-learn's MultinomialNB) or 'gaussian' (real "
                           "values; Spark's and scikit-learn's GaussianNB).")


class _NaiveBayesParams(_NaiveBayesModelParams, HasLabelCol):
    smoothing = Param(float, default=1.0, validator=gt_eq(0),
                      doc="The smoothing parameter (additive / Laplace smoothing).")


def _codes(vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of ``vals`` and each entry's index among them.

    Integer values in a small range (the usual categorical case) take an O(n) path without
    sorting; anything else goes through ``np.unique``.
    """
    vals = vals + 0.0  # -0.0 -> 0.0: one category for both zeros
    if vals.size:
        lo, hi = float(vals.min()), float(vals.max())
        if hi - lo < (1 << 22) and np.array_equal(vals, np.floor(vals)):
            codes = (vals - lo).astype(np.int64)
            present = np.bincount(codes) > 0
            return lo + np.flatnonzero(present).astype(np.float64), (np.cumsum(present) - 1)[codes]
    uniq, inv = np.unique(vals, return_inverse=True)
    return uniq, inv.reshape(-1)


def _int_codes(keys: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct int64 ``keys`` (all in ``[0, bound)``) and each key's index among them."""
    if bound <= (1 << 26):
        present = np.bincount(keys, minlength=bound) > 0
        return np.flatnonzero(present), (np.cumsum(present) - 1)[keys]
    uniq, inv = np.unique(keys, return_inverse=True)
    return uniq, inv.reshape(-1)


class _Categories:
    """The (feature, value) categories of a model, sorted by feature then value.

    A category is the int64 key ``feature * V + i`` where ``values[i]`` is its value and
    ``values`` the V distinct values over all features; lookups are a float ``searchsorted``
    into ``values`` and a table (or integer ``searchsorted``) over the keys.
    """

    def __init__(self, values: np.ndarray, keys: np.ndarray, d: int) -> None:
        self.values, self.keys, self.d = values, keys, d
        self.num_values = len(values)
        self.feature = keys // self.num_values
        self.value = values[keys % self.num_values]
        bound = d * self.num_values
        self.table: np.ndarray | None = None
        if bound <= (1 << 24):
            self.table = np.full(bound, -1, dtype=np.int64)
            self.table[keys] = np.arange(len(keys))

    def lookup(self, feat: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Category index of every (feature, value) pair and whether it exists."""
        vi = np.minimum(np.searchsorted(self.values, vals), self.num_values - 1)
        found = self.values[vi] == vals
        key = feat * self.num_values + vi
        if self.table is not None:
            idx = self.table[key]
            found &= idx >= 0
            return np.maximum(idx, 0), found
        idx = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        return idx, found & (self.keys[idx] == key)


class NaiveBayes(_NaiveBayesParams, OnePassEstimator):
    """Naive Bayes: categorical (Flink ML ``NaiveBayes``), multinomial or Gaussian (Spark MLlib).

    ``model_type="multinomial"``, with ``S_cj`` the sum of feature ``j`` over the rows of label
    ``c`` (features must be non-negative): ``theta[c][j] = log(S_cj + s) - log(sum_j S_cj + d * s)``
    and ``pi[c] = log(n_c + s) - log(n + L * s)`` (Spark's smoothed prior; scikit-learn's
    ``MultinomialNB`` has the same ``feature_log_prob_``). A row scores ``pi[c] + x . theta[c]``.

    ``model_type="gaussian"``: per label and feature the mean ``theta[c][j]`` and the population
    variance ``sigma[c][j]`` plus ``1e-9`` times the largest population variance of a feature over
    all rows; ``pi[c] = log(n_c / n)`` (Spark's and scikit-learn's ``GaussianNB``; ``smoothing`` is
    not used). A row scores ``pi[c] - 1/2 sum_j (log(2 pi sigma[c][j]) + (x_j - theta[c][j])^2 /
    sigma[c][j])``.

    ``model_type="categorical"`` (default), with ``n`` rows, ``d`` features, ``L`` distinct labels, ``n_c`` rows of label
    ``c``, ``s = smoothing``, ``K_j`` the number of distinct values of feature ``j`` over the
    whole input and ``N_cjv`` the number of rows of label ``c`` whose feature ``j`` equals ``v``:

    * ``theta[c][j][v] = log(N_cjv + s) - log(n_c + s * K_j)`` for every value ``v`` seen for
      feature ``j`` (under any label);
    * ``pi[c] = log(n_c * d + s) - log(n * d + L * s)`` (Flink ML's class prior).

    Prediction picks the label maximizing ``pi[c] + sum_j theta[c][j][x_j]`` for the
    categorical type (the first label, in ascending order, on ties, for every type). A feature value never seen for that feature during
    training raises an error (Flink ML has no probability for it either).

    Labels must be numbers with integer values ("indexed" labels, as Flink ML requires);
    features are dense or sparse vectors (a sparse vector's missing entries are value 0.0).

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"features": [[0.0], [0.0], [1.0]], "label": [0, 0, 1]})
        >>> m = fl.classification.NaiveBayes().fit(t)
        >>> m.transform({"features": [[1.0], [0.0]]}).column("prediction").to_pylist()
        [1.0, 0.0]
        >>> g = fl.table({"features": [[1.0, 2.1], [1.2, 1.9], [3.0, 0.2], [3.3, 0.1]], "label": [0, 0, 1, 1]})
        >>> m = fl.classification.NaiveBayes(model_type="gaussian").fit(g)
        >>> m.transform({"features": [[1.1, 2.5], [2.9, 0.4]]}).column("prediction").to_pylist()
        [0.0, 1.0]
    """

    # Fit state of the categorical type: one row per (label, feature, value) seen, with its row count: ``label`` (double),
    # ``feature`` (int64), ``value`` (double), ``count`` (int64); no rows for an empty input.

    # Fit state of the multinomial and Gaussian types: one row per label, ``label`` (double), ``count``
    # (int64), ``sum`` and ``m2`` (list<double>: the per-feature sums and sums of squared deviations
    # from the label's mean; m2 is empty for multinomial). Sums add; m2 merges with Chan's rule.

    def _labels(self, t: pa.Table, stage: str) -> np.ndarray:
        y = numeric_column(t, self.label_col, stage, param="label_col")
        frac = y != np.floor(y)
        if frac.any():
            row = int(np.flatnonzero(frac)[0])
            raise ValueError(
                f"{stage}: column '{self.label_col}' (parameter 'label_col') has the non-integer label "
                f"{float(y[row])!r} at row {row}; labels must be indexed numbers (0, 1, 2, ...); "
                f"index string or fractional labels first (for example with fl.feature.StringIndexer)"
            )
        return y

    def _partial(self, t: pa.Table) -> pa.Table:
        if self.model_type != "categorical":
            return self._partial_moments(t)
        stage = type(self).__name__
        x = vector_column(t, self.features_col, stage, param="features_col")
        y = numeric_column(t, self.label_col, stage, param="label_col")
        frac = y != np.floor(y)
        if frac.any():
            row = int(np.flatnonzero(frac)[0])
            raise ValueError(
                f"{stage}: column '{self.label_col}' (parameter 'label_col') has the non-integer label "
                f"{float(y[row])!r} at row {row}; labels must be indexed numbers (0, 1, 2, ...); "
                f"index string or fractional labels first (for example with fl.feature.StringIndexer)"
            )
        n, d = x.shape
        if n == 0:
            return _state_table(np.empty(0), np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))
        if d == 0:
            raise ValueError(f"{stage}: column '{self.features_col}' holds empty vectors; "
                             f"NaiveBayes needs at least one feature")
        labels, lab_index = np.unique(y + 0.0, return_inverse=True)  # -0.0 -> 0.0: one label
        lab_index = lab_index.reshape(-1)
        num_labels = len(labels)

        # (feature, value, label, count) entries, then counts per (label, feature, value).
        if sps.issparse(x):
            x = sps.csr_matrix(x)
            n_c = np.bincount(lab_index, minlength=num_labels)
            rows = np.repeat(np.arange(n), np.diff(x.indptr))
            feat, vals, labs = x.indices.astype(np.int64), x.data, lab_index[rows]
            stored = np.bincount(labs * d + feat, minlength=num_labels * d).reshape(num_labels, d)
            zeros = n_c[:, None] - stored  # implicit zeros per (label, feature)
            zl, zf = (a.astype(np.int64) for a in np.nonzero(zeros > 0))
            feat = np.concatenate([feat, zf])
            vals = np.concatenate([vals, np.zeros(len(zf))])
            labs = np.concatenate([labs, zl])
            weights = np.concatenate([np.ones(len(rows)), zeros[zl, zf]])
        else:
            feat = np.tile(np.arange(d, dtype=np.int64), n)
            vals = x.reshape(-1)
            labs = np.repeat(lab_index, d)
            weights = None
        values, keys, counts = _category_counts(labs, feat, vals, weights, num_labels, d)
        lab, cat = np.nonzero(counts)
        key = keys[cat]
        return _state_table(labels[lab], key // len(values), values[key % len(values)], counts[lab, cat])

    def _partial_moments(self, t: pa.Table) -> pa.Table:
        stage = type(self).__name__
        x = vector_column(t, self.features_col, stage, param="features_col")
        y = self._labels(t, stage)
        n, d = x.shape
        if n and d == 0:
            raise ValueError(f"{stage}: column '{self.features_col}' holds empty vectors; "
                             f"NaiveBayes needs at least one feature")
        if self.model_type == "multinomial":
            _check_nonnegative(x, self.features_col, stage)
        labels, lab_index = np.unique(y + 0.0, return_inverse=True)
        lab_index = lab_index.reshape(-1)
        counts = np.bincount(lab_index, minlength=len(labels))
        onehot = sps.csr_matrix((np.ones(n), lab_index, np.arange(n + 1)), shape=(n, len(labels))).T.tocsr()
        sums = np.asarray((onehot @ x).todense() if sps.issparse(x) else onehot @ x).reshape(len(labels), d)
        if self.model_type == "gaussian":
            m2 = np.stack([_moments(x[lab_index == c])[2] for c in range(len(labels))]) if n else np.zeros((0, d))
        else:
            m2 = np.zeros((len(labels), 0))
        return _moments_state(labels, counts, sums, m2)

    def _merge(self, states: list[pa.Table]) -> pa.Table:
        if self.model_type != "categorical":
            return _merge_moment_states(type(self).__name__, states)
        t = pa.concat_tables([_checked_state(type(self).__name__, st) for st in states])
        t = t.group_by(["label", "feature", "value"], use_threads=False).aggregate([("count", "sum")])
        t = t.sort_by([("label", "ascending"), ("feature", "ascending"), ("value", "ascending")])
        return _state_table(*(t.column(c).to_numpy() for c in ("label", "feature", "value", "count_sum")))

    def _finish(self, state: pa.Table) -> "NaiveBayesModel":
        stage = type(self).__name__
        if self.model_type != "categorical":
            return self._finish_moments(_merge_moment_states(stage, [state]))
        st = _checked_state(stage, state)
        label, feat, vals, weights = (st.column(c).to_numpy() for c in ("label", "feature", "value", "count"))
        d = int(feat.max()) + 1
        labels, lab_index = np.unique(label, return_inverse=True)
        lab_index = lab_index.reshape(-1)
        num_labels = len(labels)
        per_feature = np.bincount(lab_index * d + feat, weights=weights, minlength=num_labels * d).reshape(num_labels, d)
        if not np.all(per_feature == per_feature[:, :1]):  # every row counts once per feature
            raise ValueError(f"{stage}: the parts of the input hold feature vectors of different sizes; every row "
                             f"of one input needs vectors of one size")
        n_c = per_feature[:, 0]
        n = float(n_c.sum())
        s = float(self.smoothing)
        values, keys, counts = _category_counts(lab_index, feat, vals, weights, num_labels, d)
        cats = _Categories(values, keys, d)
        cat_feature = cats.feature
        k_j = np.bincount(cat_feature, minlength=d).astype(np.float64)
        with np.errstate(divide="ignore"):
            theta = np.log(counts + s) - np.log(n_c[:, None] + s * k_j[None, :])[:, cat_feature]
            pi = np.log(n_c * d + s) - np.log(n * d + num_labels * s)

        model = NaiveBayesModel()
        self.copy_params_to(model)
        return model.set_model_data(_model_table(theta, cats, pi, labels))


    def _finish_moments(self, st: pa.Table) -> "NaiveBayesModel":
        stage = type(self).__name__
        labels = st.column("label").to_numpy()
        n_c = st.column("count").to_numpy().astype(np.float64)
        if len(labels) == 0 or n_c.sum() == 0:
            raise ValueError(f"{stage}: the input has no rows; NaiveBayes needs at least one row to fit")
        sums = _matrix(st.column("sum"))
        L, d = sums.shape
        n = n_c.sum()
        if self.model_type == "multinomial":
            s = float(self.smoothing)
            with np.errstate(divide="ignore"):
                theta = np.log(sums + s) - np.log(sums.sum(axis=1, keepdims=True) + d * s)
                pi = np.log(n_c + s) - np.log(n + L * s)
            sigma = None
        else:
            theta = sums / n_c[:, None]
            m2 = _matrix(st.column("m2"))
            total = (0, np.zeros(d), np.zeros(d))
            for c in range(L):
                total = _merge_moments(total, (n_c[c], theta[c], m2[c]))
            epsilon = VAR_SMOOTHING * float(np.max(total[2] / n)) if d else 0.0
            sigma = m2 / n_c[:, None] + epsilon
            pi = np.log(n_c) - np.log(n)
        model = NaiveBayesModel()
        self.copy_params_to(model)
        return model.set_model_data(_dense_model_table(labels, pi, theta, sigma))


def _check_nonnegative(x: np.ndarray | sps.csr_matrix, col: str, stage: str) -> None:
    data = x.data if sps.issparse(x) else x
    neg = data < 0
    if neg.any():
        if sps.issparse(x):
            e = int(np.flatnonzero(neg)[0])
            row, j = int(np.searchsorted(x.indptr, e, side="right") - 1), int(x.indices[e])
        else:
            row, j = (int(v) for v in np.argwhere(neg)[0])
        raise ValueError(f"{stage}: column '{col}' (parameter 'features_col') has the negative value "
                         f"{float(x[row, j])!r} at row {row}, index {j}; model_type='multinomial' needs non-negative "
                         f"counts or frequencies (use model_type='gaussian' for real values)")


_MOMENTS_SCHEMA = pa.schema([("label", pa.float64()), ("count", pa.int64()), ("sum", pa.list_(pa.float64())),
                             ("m2", pa.list_(pa.float64()))])


def _matrix(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A list<double> column of equal-length rows as a 2-D array."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if len(arr) == 0:
        return np.zeros((0, 0))
    flat = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float64)
    return flat.reshape(len(arr), -1)


def _moments_state(labels: np.ndarray, counts: np.ndarray, sums: np.ndarray, m2: np.ndarray) -> pa.Table:
    def lists(m: np.ndarray) -> pa.Array:
        offsets = np.arange(len(m) + 1, dtype=np.int32) * m.shape[1]
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(m.reshape(-1), pa.float64()))

    return pa.Table.from_arrays([pa.array(labels, pa.float64()), pa.array(np.asarray(counts, dtype=np.int64)),
                                 lists(sums), lists(m2)], schema=_MOMENTS_SCHEMA)


def _merge_moment_states(stage: str, states: list[pa.Table]) -> pa.Table:
    """One state row per label: counts and sums added, m2 merged with Chan's rule."""
    for st in states:
        if st.schema.remove_metadata() != _MOMENTS_SCHEMA:
            raise ValueError(f"{stage}: a fit state has schema {st.schema}; expected (label double, count int64, "
                             f"sum list<double>, m2 list<double>) as made by {stage}.partial of this model_type")
    t = pa.concat_tables(states)
    label, count = t.column("label").to_numpy(), t.column("count").to_numpy()
    keep = count > 0
    if not keep.any():
        return _moments_state(np.empty(0), np.empty(0, np.int64), np.zeros((0, 0)), np.zeros((0, 0)))
    sizes = pc.list_value_length(t.column("sum")).to_numpy(zero_copy_only=False)[keep]
    if len(np.unique(sizes)) > 1:
        raise ValueError(f"{stage}: the parts of the input hold feature vectors of different sizes; every row "
                         f"of one input needs vectors of one size")
    sums, m2 = _matrix(t.column("sum").filter(pa.array(keep))), _matrix(t.column("m2").filter(pa.array(keep)))
    label, count = label[keep], count[keep]
    labels, inv = np.unique(label, return_inverse=True)
    inv = inv.reshape(-1)
    out_n = np.bincount(inv, weights=count, minlength=len(labels)).astype(np.int64)
    out_sum = np.zeros((len(labels), sums.shape[1]))
    np.add.at(out_sum, inv, sums)          # one row per (part, label): a handful of rows
    out_m2 = np.zeros((len(labels), m2.shape[1]))
    if m2.shape[1]:
        for c in range(len(labels)):
            acc = (0, np.zeros(m2.shape[1]), np.zeros(m2.shape[1]))
            for r in np.flatnonzero(inv == c):
                acc = _merge_moments(acc, (int(count[r]), sums[r] / count[r], m2[r]))
            out_m2[c] = acc[2]
    return _moments_state(labels, out_n, out_sum, out_m2)


def _dense_model_table(labels: np.ndarray, pi: np.ndarray, theta: np.ndarray, sigma: np.ndarray | None) -> pa.Table:
    """Model data of the multinomial and Gaussian types: one row per label (Spark's pi, theta, sigma)."""
    d = theta.shape[1]
    cols = {"label": pa.array(labels, pa.float64()), "pi": pa.array(pi, pa.float64()),
            "theta": pa.FixedSizeListArray.from_arrays(pa.array(theta.reshape(-1), pa.float64()), d)}
    if sigma is not None:
        cols["sigma"] = pa.FixedSizeListArray.from_arrays(pa.array(sigma.reshape(-1), pa.float64()), d)
    return pa.table(cols)


def _category_counts(labs: np.ndarray, feat: np.ndarray, vals: np.ndarray, weights: np.ndarray | None,
                     num_labels: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (feature, value) categories of weighted ``(label index, feature, value)`` entries: the
    sorted distinct values, the category keys (see :class:`_Categories`) and the counts per
    (label, category) (``num_labels`` x categories, float64)."""
    values, value_index = _codes(vals)
    keys, cat_index = _int_codes(feat * len(values) + value_index, d * len(values))
    num_cats = len(keys)
    counts = np.bincount(labs * num_cats + cat_index, weights=weights,
                         minlength=num_labels * num_cats).reshape(num_labels, num_cats).astype(np.float64)
    return values, keys, counts


_STATE_SCHEMA = pa.schema([("label", pa.float64()), ("feature", pa.int64()), ("value", pa.float64()),
                           ("count", pa.int64())])


def _state_table(label: np.ndarray, feature: np.ndarray, value: np.ndarray, count: np.ndarray) -> pa.Table:
    return pa.Table.from_arrays([pa.array(label, pa.float64()), pa.array(feature, pa.int64()),
                                 pa.array(value, pa.float64()), pa.array(np.asarray(count).astype(np.int64))],
                                schema=_STATE_SCHEMA)


def _checked_state(stage: str, state: pa.Table) -> pa.Table:
    if state.schema.remove_metadata() != _STATE_SCHEMA:
        raise ValueError(f"{stage}: a fit state has schema {state.schema}; expected (label double, feature int64, "
                         f"value double, count int64) as made by {stage}.partial")
    return state


def _model_table(theta: np.ndarray, cats: _Categories, pi: np.ndarray, labels: np.ndarray) -> pa.Table:
    """The one-row model data table (see :class:`NaiveBayesModel`)."""
    num_labels, num_cats = theta.shape
    d = cats.d
    starts = np.searchsorted(cats.feature, np.arange(d))  # first category of each feature
    map_offsets = np.concatenate([(np.arange(num_labels)[:, None] * num_cats + starts[None, :]).reshape(-1),
                                  [num_labels * num_cats]]).astype(np.int32)
    maps = pa.MapArray.from_arrays(pa.array(map_offsets), pa.array(np.tile(cats.value, num_labels)),
                                   pa.array(theta.reshape(-1)))
    per_label = pa.ListArray.from_arrays(pa.array(np.arange(0, num_labels * d + 1, d, dtype=np.int32)), maps)
    theta_col = pa.ListArray.from_arrays(pa.array(np.array([0, num_labels], dtype=np.int32)), per_label)
    return pa.table({
        "theta": theta_col,
        "pi_array": pa.array([pi.tolist()], type=dense_vector_type(num_labels)),
        "labels": pa.array([labels.tolist()], type=dense_vector_type(num_labels)),
    })


class NaiveBayesModel(_NaiveBayesModelParams, Model):
    """A fitted :class:`NaiveBayes`: appends ``prediction_col`` (double, the predicted label).

    Model data of ``model_type="multinomial"`` and ``"gaussian"``: one Arrow table with one row per
    label, ascending (Spark MLlib's ``pi``, ``theta``, ``sigma``): ``label`` (double), ``pi`` (double,
    log prior), ``theta`` (dense vector of ``d``: log P(feature | label) for multinomial, the means
    for Gaussian) and, for Gaussian, ``sigma`` (dense vector of ``d``: the variances).

    Model data of ``model_type="categorical"``: one Arrow table with one row, shaped as Flink ML's
    ``NaiveBayesModelData``:

    =========  ====================================  =============================================
    column     type                                  meaning
    =========  ====================================  =============================================
    theta      ``list<list<map<double, double>>>``   ``theta[c][j][value]``: log P(feature j = value
                                                     | label c), smoothed; every label's map of
                                                     feature ``j`` has the same keys
    pi_array   dense vector (``L`` doubles)          log prior of each label
    labels     dense vector (``L`` doubles)          the labels, ascending
    =========  ====================================  =============================================

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"features": [[0.0, 1.0], [1.0, 1.0]], "label": [0.0, 1.0]})
        >>> m = fl.classification.NaiveBayes().fit(t)
        >>> m.get_model_data()[0].column_names
        ['theta', 'pi_array', 'labels']
        >>> m.transform({"features": [[1.0, 1.0]]}).column("prediction").to_pylist()
        [1.0]
        >>> m.transform({"features": [[2.0, 1.0]]})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: NaiveBayesModel: column 'features' row 0: feature 0 has value 2.0, which was not seen ...
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        stage = type(self).__name__
        if len(tables) != 1:
            raise ValueError(f"{stage}: model data is one table, got {len(tables)}")
        if self.model_type != "categorical":
            self._load_dense(tables[0], stage)
            return
        (t,) = tables
        missing = [c for c in ("theta", "pi_array", "labels") if c not in t.column_names]
        if missing:
            raise ValueError(f"{stage}: model data lacks columns {missing}; it needs theta, pi_array and labels")
        if t.num_rows != 1:
            raise ValueError(f"{stage}: model data must have exactly one row, got {t.num_rows}")
        labels = to_numpy(t.column("labels"), "labels", stage)[0]
        pi = to_numpy(t.column("pi_array"), "pi_array", stage)[0]
        num_labels = len(labels)
        if len(pi) != num_labels or num_labels == 0:
            raise ValueError(f"{stage}: model data has {num_labels} labels and {len(pi)} priors; they must match "
                             f"and be at least one")
        theta_col = t.column("theta").combine_chunks()
        if not (pa.types.is_list(theta_col.type) and pa.types.is_list(theta_col.type.value_type)
                and pa.types.is_map(theta_col.type.value_type.value_type)):
            raise TypeError(f"{stage}: model data column 'theta' has type {theta_col.type}, "
                            f"expected list<list<map<double, double>>>")
        per_label = theta_col.flatten()
        if len(per_label) != num_labels:
            raise ValueError(f"{stage}: model data 'theta' has {len(per_label)} labels, 'labels' has {num_labels}")
        lengths = np.diff(per_label.offsets.to_numpy())
        d = int(lengths[0])
        if d == 0 or not np.all(lengths == d):
            raise ValueError(f"{stage}: model data 'theta' must hold the same number (>0) of features per label, "
                             f"got {lengths.tolist()}")
        maps = per_label.flatten()
        off = maps.offsets.to_numpy().astype(np.int64)
        keys = maps.keys.to_numpy(zero_copy_only=False)[off[0]:off[-1]].astype(np.float64)
        items = maps.items.to_numpy(zero_copy_only=False)[off[0]:off[-1]].astype(np.float64)
        sizes = np.diff(off)
        map_id = np.repeat(np.arange(num_labels * d, dtype=np.int64), sizes)
        lab, feat = map_id // d, map_id % d
        values, value_index = _codes(keys)
        key = feat * len(values) + value_index
        order = np.lexsort((key, lab))  # by label, then feature and value
        key, lab = key[order], lab[order]
        per = len(key) // num_labels
        if len(key) != per * num_labels or not np.array_equal(np.bincount(lab, minlength=num_labels),
                                                               np.full(num_labels, per)):
            raise ValueError(f"{stage}: model data 'theta' must have the same feature values under every label")
        cat_keys = key[:per]
        if not np.all(key.reshape(num_labels, per) == cat_keys[None, :]):
            raise ValueError(f"{stage}: model data 'theta' must have the same feature values under every label")
        if per > 1 and np.any(cat_keys[1:] == cat_keys[:-1]):
            raise ValueError(f"{stage}: model data 'theta' has a duplicate feature value")
        cats = _Categories(values, cat_keys, d)
        if np.any(np.bincount(cats.feature, minlength=d) == 0):
            raise ValueError(f"{stage}: model data 'theta' has a feature without any value")
        self._labels = labels
        self._pi = pi
        self._cats = cats
        self._theta = np.ascontiguousarray(items[order].reshape(num_labels, per))
        self._d = d
        # Sparse path: log P(feature j = 0 | c), with 0 where 0.0 is not a known value of feature j.
        zero_idx, self._zero_known = cats.lookup(np.arange(d, dtype=np.int64), np.zeros(d))
        self._theta0 = np.where(self._zero_known[None, :], self._theta[:, zero_idx], 0.0)

    def _load_dense(self, t: pa.Table, stage: str) -> None:
        need = ["label", "pi", "theta"] + (["sigma"] if self.model_type == "gaussian" else [])
        missing = [c for c in need if c not in t.column_names]
        if missing:
            raise ValueError(f"{stage}: model data of model_type={self.model_type!r} lacks columns {missing}; it needs "
                             f"{need} (one row per label); got {t.column_names}")
        if t.num_rows == 0:
            raise ValueError(f"{stage}: model data has no rows; it needs one row per label")
        labels = numeric_column(t, "label", f"{stage} model data")
        pi = numeric_column(t, "pi", f"{stage} model data", allow_nan=False)
        theta = vector_column(t, "theta", f"{stage} model data", dense=True, finite=False)
        if np.any(np.diff(labels) <= 0):
            raise ValueError(f"{stage}: model data labels must be distinct and ascending, got {labels.tolist()}")
        self._labels, self._pi, self._d = labels, pi, theta.shape[1]
        if self.model_type == "multinomial":
            if np.isnan(theta).any() or np.isposinf(theta).any():
                raise ValueError(f"{stage}: model data 'theta' holds NaN or +inf; log probabilities are <= 0")
            self._theta = np.ascontiguousarray(theta)
            return
        sigma = vector_column(t, "sigma", f"{stage} model data", dense=True)
        check_finite(theta, "theta", f"{stage} model data")
        if sigma.shape != theta.shape or not (sigma > 0).all():
            raise ValueError(f"{stage}: model data 'sigma' (variances) must be positive and shaped as 'theta'")
        self._theta, self._sigma = np.ascontiguousarray(theta), np.ascontiguousarray(sigma)
        # log N(x | mean, var) summed over j = const_c - 1/2 sum_j (x_j - mean_cj)^2 / var_cj
        self._gauss_const = pi - 0.5 * np.log(2.0 * np.pi * sigma).sum(axis=1)

    def _dense_scores(self, x: np.ndarray | sps.csr_matrix, first_row: int) -> np.ndarray:
        """The joint log likelihoods (L x n) of the multinomial or Gaussian type."""
        stage = type(self).__name__
        if self.model_type == "multinomial":
            _check_nonnegative(x, self.features_col, stage)
            return np.asarray((x @ self._theta.T).T) + self._pi[:, None]
        xd = x.toarray() if sps.issparse(x) else x
        scores = np.empty((len(self._labels), xd.shape[0]))
        for c in range(len(self._labels)):       # a pass per label, vectorized over the rows
            scores[c] = self._gauss_const[c] - 0.5 * (((xd - self._theta[c]) ** 2) / self._sigma[c]).sum(axis=1)
        return scores

    def _predict_moments(self, x: np.ndarray | sps.csr_matrix) -> np.ndarray:
        n = x.shape[0]
        out = np.empty(n)
        block = max(1, _BLOCK_ELEMENTS // max(self._d, 1))
        for start in range(0, n, block):
            xb = x[start:start + block]
            out[start:start + xb.shape[0]] = self._pick(self._dense_scores(xb, start), start)
        return out

    # --- kernels ---------------------------------------------------------------------------

    def _unseen_error(self, row: int, j: int, value: float) -> ValueError:
        feat = self._cats.value[self._cats.feature == j]
        shown = ", ".join(repr(float(v)) for v in feat[:10]) + (", ..." if len(feat) > 10 else "")
        return ValueError(
            f"{type(self).__name__}: column '{self.features_col}' row {row}: feature {j} has value {float(value)!r}, "
            f"which was not seen for that feature during training (seen values: [{shown}]); map it to a seen "
            f"value or fit on data that contains it"
        )

    def _pick(self, scores: np.ndarray, first_row: int) -> np.ndarray:
        """Labels of the best scores (L x n); the first label wins ties."""
        best = np.argmax(scores, axis=0)
        top = scores[best, np.arange(scores.shape[1])]
        bad = ~(top > -np.inf)
        if bad.any():
            row = first_row + int(np.flatnonzero(bad)[0])
            raise ValueError(f"{type(self).__name__}: row {row} has zero probability under every label "
                             f"(smoothing=0 and unseen label/value combinations); fit with smoothing > 0")
        return self._labels[best]

    def _predict_dense(self, x: np.ndarray) -> np.ndarray:
        n, d = x.shape
        out = np.empty(n)
        block = max(1, _BLOCK_ELEMENTS // d)
        feats = np.arange(d, dtype=np.int64)[None, :]
        for start in range(0, n, block):
            xb = x[start:start + block]
            idx, found = self._cats.lookup(feats, xb)
            if not found.all():
                r, j = np.argwhere(~found)[0]
                raise self._unseen_error(start + int(r), int(j), xb[r, j])
            scores = np.empty((len(self._labels), len(xb)))
            for c in range(len(self._labels)):
                scores[c] = self._theta[c][idx].sum(axis=1)
            scores += self._pi[:, None]
            out[start:start + len(xb)] = self._pick(scores, start)
        return out

    def _predict_sparse(self, x: sps.csr_matrix) -> np.ndarray:
        x = sps.csr_matrix(x)
        n, d = x.shape
        nnz_per_row = np.diff(x.indptr)
        rows = np.repeat(np.arange(n), nnz_per_row)
        feat = x.indices.astype(np.int64)
        # Rows whose implicit zeros fall on a feature where 0.0 was never seen.
        if not self._zero_known.all():
            unknown = ~self._zero_known
            stored_unknown = np.bincount(rows[unknown[feat]], minlength=n)
            bad = stored_unknown < unknown.sum()
            if bad.any():
                r = int(np.flatnonzero(bad)[0])
                present = set(feat[x.indptr[r]:x.indptr[r + 1]].tolist())
                j = int(next(j for j in np.flatnonzero(unknown) if j not in present))
                raise self._unseen_error(r, j, 0.0)
        idx, found = self._cats.lookup(feat, x.data)
        if not found.all():
            e = int(np.flatnonzero(~found)[0])
            raise self._unseen_error(int(rows[e]), int(feat[e]), x.data[e])
        # score = pi + sum_j theta0[j] + sum over stored entries (theta[j, v] - theta0[j])
        contrib = self._theta[:, idx] - self._theta0[:, feat]  # L x nnz
        gather = sps.csr_matrix((np.ones(len(feat)), np.arange(len(feat)), x.indptr), shape=(n, len(feat)))
        scores = (gather @ contrib.T).T + (self._pi + self._theta0.sum(axis=1))[:, None]
        return self._pick(np.asarray(scores), 0)

    def _transform(self, *tables: pa.Table) -> pa.Table:
        (t,) = tables
        self._require_model()
        x = vector_column(t, self.features_col, type(self).__name__, param="features_col", size=self._d)
        if t.num_rows == 0:
            return with_column(t, self.prediction_col, pa.array([], pa.float64()))
        if self.model_type != "categorical":
            pred = self._predict_moments(x)
        else:
            pred = self._predict_sparse(x) if sps.issparse(x) else self._predict_dense(x)
        return with_column(t, self.prediction_col, pa.array(pred, pa.float64()))

    def row_fn(self) -> RowFn:
        self._require_model()
        if self.model_type != "categorical":
            return self._row_fn_moments()
        fc, pc, d, stage = self.features_col, self.prediction_col, self._d, type(self).__name__
        cats, theta, pi, labels = self._cats, self._theta, self._pi, self._labels
        feats = np.arange(d, dtype=np.int64)
        unseen = self._unseen_error

        def fn(row: dict) -> None:
            x = dense_row_vector(row, fc, stage, d)
            idx, found = cats.lookup(feats, x)
            if not found.all():
                j = int(np.flatnonzero(~found)[0])
                raise unseen(0, j, x[j])
            scores = theta[:, idx].sum(axis=1) + pi
            best = int(np.argmax(scores))
            if not scores[best] > -np.inf:
                raise ValueError(f"{stage}: row 0 has zero probability under every label "
                                 f"(smoothing=0 and unseen label/value combinations); fit with smoothing > 0")
            row[pc] = float(labels[best])

        return fn

    def _row_fn_moments(self) -> RowFn:
        fc, pc, d, stage = self.features_col, self.prediction_col, self._d, type(self).__name__
        scores_of, pick = self._dense_scores, self._pick

        def fn(row: dict) -> None:
            x = dense_row_vector(row, fc, stage, d)
            row[pc] = float(pick(scores_of(x[None, :], 0), 0)[0])

        return fn
