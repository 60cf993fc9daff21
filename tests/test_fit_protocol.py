"""The fit protocol (issue 9, item 3): one-pass estimators fit as ``finish(merge(partials))`` and
iterative ones run each round as ``round_partial`` over batches plus ``round_merge``.

Fitting on a table must equal merging the partial states of any split of it (random splits,
one-row splits, splits with empty parts), in any grouping of the merges; states are plain Arrow
tables that survive Arrow IPC. Where a model is a statistic, the merged result is also checked
against NumPy on the whole data.
"""
from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from doc_examples import run_doc_examples
import scipy.sparse as sps
from hypothesis import given, settings, strategies as st

import flowlearn as fl
from flowlearn.api import IterativeEstimator, OnePassEstimator

F = fl.feature
PROPERTY = settings(derandomize=True, max_examples=12, deadline=None, database=None)


# ---------------------------------------------------------------------------------------------
# data


def _data(n: int = 41) -> dict:
    rng = np.random.default_rng(7)
    x = np.round(rng.standard_normal((n, 4)) * [1.0, 10.0, 0.1, 3.0] + [0.0, 5.0, -2.0, 1e3], 3)
    x[:, 3] = np.round(x[:, 3])  # repeated values
    sp = sps.random(n, 6, density=0.3, random_state=3, format="csr")
    sp.data = np.round(sp.data * 4) - 2.0  # small integers, some stored zeros
    a = np.round(rng.standard_normal(n), 1)
    a[rng.random(n) < 0.2] = np.nan
    b = rng.integers(0, 4, n).astype(float)
    cities = np.array(["Oslo", "Rome", "Bern", "Ünye", "Åsa", "rome", "Zug"])
    city = rng.choice(cities, n, p=[0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05]).astype(object)
    city[rng.random(n) < 0.1] = None
    return {
        "x": x, "sp": sp, "a": a, "b": b, "city": city,
        "cat": rng.integers(0, 3, (n, 3)).astype(float), "label": rng.integers(0, 3, n).astype(float),
    }


D = _data()


def _table() -> pa.Table:
    return pa.table({
        "x": fl.linalg.from_numpy(D["x"]), "sp": fl.linalg.from_csr(D["sp"]),
        "a": pa.array(D["a"], from_pandas=True), "b": pa.array(D["b"]),
        "city": pa.array(D["city"].tolist(), pa.string()), "n": pa.array(D["b"].astype(np.int64)),
        "cat": fl.linalg.from_numpy(D["cat"]), "spcat": fl.linalg.from_csr(sps.csr_matrix(D["cat"])),
        "label": pa.array(D["label"]),
    })


TABLE = _table()
N = TABLE.num_rows

# (id, estimator factory, exact): exact models are equal bit for bit over any split; the others
# (sums of floats) to 1e-12.
ONE_PASS = [
    ("StandardScaler", lambda: F.StandardScaler(input_col="x", with_mean=True), False),
    ("StandardScaler-sparse", lambda: F.StandardScaler(input_col="sp"), False),
    ("MinMaxScaler", lambda: F.MinMaxScaler(input_col="x"), True),
    ("MinMaxScaler-sparse", lambda: F.MinMaxScaler(input_col="sp"), True),
    ("MaxAbsScaler", lambda: F.MaxAbsScaler(input_col="x"), True),
    ("MaxAbsScaler-sparse", lambda: F.MaxAbsScaler(input_col="sp"), True),
    ("Imputer-mean", lambda: F.Imputer(input_cols=["a", "b"], output_cols=["a2", "b2"]), False),
    ("Imputer-most_frequent", lambda: F.Imputer(input_cols=["a", "b"], output_cols=["a2", "b2"],
                                                strategy="most_frequent", missing_value=2.0), True),
    ("Imputer-median-exact", lambda: F.Imputer(input_cols=["a", "b"], output_cols=["a2", "b2"], strategy="median",
                                               relative_error=0.0), True),
    *[(f"StringIndexer-{order}", (lambda order=order: F.StringIndexer(
        input_cols=["city", "n"], output_cols=["ci", "ni"], string_order_type=order)), True)
      for order in ["arbitrary", "frequencyDesc", "frequencyAsc", "alphabetDesc", "alphabetAsc"]],
    ("StringIndexer-max_index_num", lambda: F.StringIndexer(input_cols=["city"], output_cols=["ci"],
                                                            string_order_type="frequencyDesc", max_index_num=4), True),
    ("OneHotEncoder", lambda: F.OneHotEncoder(input_cols=["b", "n"], output_cols=["bv", "nv"]), True),
    ("NaiveBayes", lambda: fl.classification.NaiveBayes(features_col="cat"), True),
    ("NaiveBayes-sparse", lambda: fl.classification.NaiveBayes(features_col="spcat", smoothing=0.5), True),
]
ONE_PASS_IDS = [c[0] for c in ONE_PASS]


def _parts(t: pa.Table, cuts: list[int]) -> list[pa.Table]:
    bounds = [0, *sorted(cuts), t.num_rows]
    return [t.slice(lo, hi - lo) for lo, hi in zip(bounds, bounds[1:])]


def _ipc(state: pa.Table) -> pa.Table:
    """The state after a trip through Arrow IPC bytes (what an engine ships between workers)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, state.schema) as w:
        w.write_table(state)
    return pa.ipc.open_stream(sink.getvalue().to_pybytes()).read_all()


def _tree_merge(est: OnePassEstimator, states: list[pa.Table], grouping: list[int]) -> pa.Table:
    """Merge adjacent states in an order given by ``grouping`` (a list of positions), keeping input order."""
    states = list(states)
    for g in grouping:
        if len(states) == 1:
            break
        i = g % (len(states) - 1)
        states[i:i + 2] = [est.merge(states[i:i + 2])]
    return est.merge(states)


def _assert_same_model(got: fl.Model, want: fl.Model, exact: bool) -> None:
    (a,), (b,) = got.get_model_data(), want.get_model_data()
    assert a.column_names == b.column_names
    if exact:
        assert a.equals(b), (a.to_pylist(), b.to_pylist())
        return
    for name in a.column_names:
        ca, cb = a.column(name), b.column(name)
        if pa.types.is_floating(ca.type) or fl.linalg.is_vector_type(ca.type):
            va = fl.linalg.to_numpy(ca) if fl.linalg.is_vector_type(ca.type) else ca.to_numpy()
            vb = fl.linalg.to_numpy(cb) if fl.linalg.is_vector_type(cb.type) else cb.to_numpy()
            np.testing.assert_allclose(va, vb, rtol=1e-12, atol=1e-12 * max(1.0, float(np.abs(vb).max())))
        else:
            assert ca.equals(cb)


# ---------------------------------------------------------------------------------------------
# one-pass estimators: fit == finish(merge(partials)) over any split


def test_every_one_pass_estimator_is_covered():
    """Every flowlearn estimator that can fit in one pass implements the protocol and is tested here."""
    covered = {type(make()).__name__ for _, make, _ in ONE_PASS}
    assert covered == {"StandardScaler", "MinMaxScaler", "MaxAbsScaler", "Imputer", "StringIndexer", "OneHotEncoder",
                       "NaiveBayes"}
    assert all(isinstance(make(), OnePassEstimator) for _, make, _ in ONE_PASS)
    # Bucketizer learns nothing (its splits are a parameter): no fit to split
    assert not isinstance(F.Bucketizer(input_cols=["x"], output_cols=["y"], splits_array=[[0, 1, 2]]), fl.Estimator)


@pytest.mark.parametrize("name, make, exact", ONE_PASS, ids=ONE_PASS_IDS)
@PROPERTY
@given(cuts=st.lists(st.integers(0, N), max_size=6), grouping=st.lists(st.integers(0, 10), max_size=8),
       through_ipc=st.booleans())
def test_fit_equals_merged_partials_of_any_split(name, make, exact, cuts, grouping, through_ipc):
    est = make()
    want = est.fit(TABLE)
    states = [est.partial(p) for p in _parts(TABLE, cuts)]
    if through_ipc:
        states = [_ipc(s) for s in states]
    _assert_same_model(est.finish(_tree_merge(est, states, grouping)), want, exact)


@pytest.mark.parametrize("name, make, exact", ONE_PASS, ids=ONE_PASS_IDS)
def test_one_row_splits_and_empty_parts(name, make, exact):
    est = make()
    want = est.fit(TABLE)
    empty = TABLE.slice(0, 0)
    one_row = [est.partial(TABLE.slice(i, 1)) for i in range(N)]
    _assert_same_model(est.finish(est.merge(one_row)), want, exact)
    with_empties = [est.partial(empty), est.partial(TABLE.slice(0, 5)), est.partial(empty), est.partial(empty),
                    est.partial(TABLE.slice(5)), est.partial(empty)]
    _assert_same_model(est.finish(est.merge(with_empties)), want, exact)
    # record batches are parts too (what an engine's workers hold)
    batches = [est.partial(b) for b in TABLE.to_batches(max_chunksize=7)]
    _assert_same_model(est.finish(est.merge(batches)), want, exact)


@pytest.mark.parametrize("name, make, exact", ONE_PASS, ids=ONE_PASS_IDS)
def test_empty_states_are_neutral_and_an_empty_input_is_refused(name, make, exact):
    est = make()
    stage = type(est).__name__
    empty = est.partial(TABLE.slice(0, 0))
    assert isinstance(empty, pa.Table) and empty.num_rows == 0
    assert est.merge([empty, _ipc(empty), empty]).num_rows == 0
    part = est.partial(TABLE.slice(3, 9))
    assert est.merge([empty, part, empty]).equals(est.merge([part]))
    with pytest.raises(ValueError, match=rf"{stage}: fit needs at least one row; the input table is empty"):
        est.finish(est.merge([empty, empty]))
    with pytest.raises(ValueError, match=rf"{stage}: fit needs at least one row"):
        est.fit(TABLE.slice(0, 0))
    with pytest.raises(ValueError, match=rf"{stage}.merge needs at least one state"):
        est.merge([])
    with pytest.raises(TypeError, match=rf"{stage}.merge: state 1 is a dict; states are pyarrow Tables"):
        est.merge([part, {"x": [1.0]}])


COMMUTATIVE = [c for c in ONE_PASS if c[0] != "StringIndexer-arbitrary"]


@pytest.mark.parametrize("name, make, exact", COMMUTATIVE, ids=[c[0] for c in COMMUTATIVE])
@PROPERTY
@given(cuts=st.lists(st.integers(0, N), min_size=1, max_size=5), order=st.randoms(use_true_random=False))
def test_merge_is_commutative(name, make, exact, cuts, order):
    est = make()
    states = [est.partial(p) for p in _parts(TABLE, cuts)]
    shuffled = list(states)
    order.shuffle(shuffled)
    _assert_same_model(est.finish(est.merge(shuffled)), est.finish(est.merge(states)), exact)


def test_string_indexer_arbitrary_order_is_first_appearance_over_the_merged_parts():
    """'arbitrary' keeps the order of first appearance: merging parts in input order gives that of the
    whole table, merging them in another order that of the reordered rows (checked against Python)."""
    est = F.StringIndexer(input_cols=["city"], output_cols=["ci"])
    head, tail = TABLE.slice(0, 20), TABLE.slice(20)

    def first_appearance(values):
        return list(dict.fromkeys(v for v in values if v is not None))

    labels = lambda m: m.get_model_data()[0].column("string_arrays")[0].as_py()[0]  # noqa: E731
    merged = est.finish(est.merge([est.partial(head), est.partial(tail)]))
    assert labels(merged) == first_appearance(D["city"].tolist()) == labels(est.fit(TABLE))
    swapped = est.finish(est.merge([est.partial(tail), est.partial(head)]))
    assert labels(swapped) == first_appearance(D["city"][20:].tolist() + D["city"][:20].tolist())


def test_string_indexer_frequency_ties_are_alphabetical_across_parts():
    """Counts add up across parts; equal counts are ordered alphabetically (Java order), whatever part a
    string came from first."""
    t1 = fl.table({"s": ["b", "c", "c", "a"]})
    t2 = fl.table({"s": ["a", "b", "d", "d", "e"]})
    for order, want in [("frequencyDesc", ["a", "b", "c", "d", "e"]), ("frequencyAsc", ["e", "a", "b", "c", "d"])]:
        est = F.StringIndexer(input_cols=["s"], output_cols=["i"], string_order_type=order)
        for parts in ([t1, t2], [t2, t1]):
            got = est.finish(est.merge([est.partial(p) for p in parts]))
            assert got.get_model_data()[0].column("string_arrays")[0].as_py() == [want]


# ---------------------------------------------------------------------------------------------
# statistics against NumPy


@PROPERTY
@given(cuts=st.lists(st.integers(0, 200), max_size=8), shift=st.sampled_from([0.0, 1e6, 1e9]))
def test_standard_scaler_merge_is_numerically_stable(cuts, shift):
    """Chan et al.'s merge: a large mean over a small spread keeps the sample standard deviation to
    1e-6 relative (a running sum of squares minus n * mean^2 loses every digit at a 1e9 shift)."""
    rng = np.random.default_rng(11)
    x = shift + rng.standard_normal((200, 3)) * [1.0, 0.01, 100.0]
    t = fl.table({"x": x})
    est = F.StandardScaler(input_col="x")
    (md,) = est.finish(est.merge([est.partial(p) for p in _parts(t, cuts)])).get_model_data()
    np.testing.assert_allclose(md.column("mean")[0].as_py(), x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(md.column("std")[0].as_py(), x.std(axis=0, ddof=1), rtol=1e-6)


def test_online_standard_scaler_uses_the_batch_merge():
    """One Chan merge kernel: the online scaler's windows merge with StandardScaler's state merge."""
    from flowlearn.feature import online_scalers, scalers

    assert online_scalers._merge_moments is scalers._merge_moments
    assert not hasattr(online_scalers, "_combine")
    rng = np.random.default_rng(2)
    x = 1e8 + rng.standard_normal((90, 2))
    versions = list(online_scalers.OnlineStandardScaler(input_col="x", window_rows=7).fit_versions(fl.table({"x": x})))
    np.testing.assert_allclose(versions[-1]["std"][0].as_py(), x.std(axis=0, ddof=1), rtol=1e-8)


@pytest.mark.parametrize("relative_error", [0.0, 0.001, 0.02, 0.1])
@PROPERTY
@given(cuts=st.lists(st.integers(0, 3000), max_size=10), seed=st.integers(0, 2**16), order=st.randoms(use_true_random=False))
def test_imputer_median_is_within_relative_error_over_any_split(relative_error, cuts, seed, order):
    """The median's rank is within relative_error * n of ceil(n / 2) (Spark's approxQuantile bound),
    whatever the split and the merge order; with relative_error=0 it is exact."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.standard_normal(3000) * rng.choice([1.0, 1e3]), int(rng.integers(0, 3)))
    x[rng.random(3000) < 0.1] = np.nan
    t = fl.table({"x": pa.array(x, from_pandas=True)})
    est = F.Imputer(input_cols=["x"], output_cols=["y"], strategy="median", relative_error=relative_error)
    states = [est.partial(p) for p in _parts(t, cuts)]
    order.shuffle(states)
    got = est.finish(est.merge(states)).get_model_data()[0].column("surrogate")[0].as_py()
    valid = np.sort(x[~np.isnan(x)])
    n, r = len(valid), math.ceil(len(valid) / 2)
    ranks = (np.searchsorted(valid, got, "left") + 1, np.searchsorted(valid, got, "right"))  # ranks it occupies
    assert ranks[0] <= ranks[1], f"{got} is not a valid value"
    assert ranks[0] - relative_error * n <= r <= ranks[1] + relative_error * n
    if relative_error == 0:
        assert got == valid[r - 1]
    state = est.merge(states)
    assert len(state.column("values")[0]) <= (10 / relative_error + 2 if relative_error else n)


@pytest.mark.parametrize("tree", [False, True])
def test_imputer_median_state_stays_small_over_many_merges(tree):
    """80 merge levels (or a balanced tree of 80 parts) keep the rank bound, and the summary stays at
    a few times 1 / relative_error values (the whole column has 20,000)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20000)
    t = fl.table({"x": x})
    est = F.Imputer(input_cols=["x"], output_cols=["x"], strategy="median", relative_error=0.01)
    states = [est.partial(p) for p in _parts(t, list(range(250, 20000, 250)))]
    while len(states) > 1:
        if tree:
            states = [est.merge(states[i:i + 2]) for i in range(0, len(states), 2)]
        else:
            states = [est.merge(states[:2])] + states[2:]
    assert len(states[0].column("values")[0]) <= 15 / 0.01
    got = est.finish(states[0]).get_model_data()[0].column("surrogate")[0].as_py()
    rank = np.searchsorted(np.sort(x), got) + 1
    assert abs(rank - 10000) <= 0.01 * 20000


def test_merged_scaler_and_naive_bayes_statistics_match_numpy():
    parts = [TABLE.slice(0, 13), TABLE.slice(13, 1), TABLE.slice(14)]
    est = F.MinMaxScaler(input_col="sp")
    (md,) = est.finish(est.merge([est.partial(p) for p in parts])).get_model_data()
    dense = D["sp"].toarray()
    assert md.column("min_vector")[0].as_py() == dense.min(axis=0).tolist()
    assert md.column("max_vector")[0].as_py() == dense.max(axis=0).tolist()
    est = F.Imputer(input_cols=["a"], output_cols=["a"])
    (md,) = est.finish(est.merge([est.partial(p) for p in parts])).get_model_data()
    assert md.column("surrogate")[0].as_py() == pytest.approx(np.nanmean(D["a"]), rel=1e-14)
    # naive Bayes: theta[c][j][v] = log(N_cjv + s) - log(n_c + s K_j), counted here directly
    est = fl.classification.NaiveBayes(features_col="cat", smoothing=1.0)
    model = est.finish(est.merge([est.partial(p) for p in parts]))
    theta = model.get_model_data()[0].column("theta")[0].as_py()
    x, y = D["cat"], D["label"]
    for c, label in enumerate(np.unique(y)):
        for j in range(x.shape[1]):
            values = np.unique(x[:, j])
            for v in values:
                want = math.log(np.sum((y == label) & (x[:, j] == v)) + 1.0) - math.log(np.sum(y == label) + len(values))
                assert dict(theta[c][j])[v] == pytest.approx(want, rel=1e-14)


def test_imputer_mean_refuses_parts_whose_sums_overflow_together():
    est = F.Imputer(input_cols=["a"], output_cols=["a"])
    parts = [est.partial({"a": [1e308, 1.0]}), est.partial({"a": [1e308]})]
    with pytest.raises(ValueError, match=r"Imputer: column 'a' \(parameter 'input_cols'\) sums beyond float64 over the "
                                         r"parts of the input, so the mean overflows"):
        est.finish(est.merge(parts))


def test_parts_with_different_vector_sizes_are_refused():
    a, b = fl.table({"x": [[1.0, 2.0]], "label": [0.0]}), fl.table({"x": [[1.0, 2.0, 3.0]], "label": [1.0]})
    for est in (F.StandardScaler(input_col="x"), F.MinMaxScaler(input_col="x"), F.MaxAbsScaler(input_col="x")):
        with pytest.raises(ValueError, match=rf"{type(est).__name__}: the parts of the input hold vectors of sizes "
                                             r"\[2, 3\]"):
            est.merge([est.partial(a), est.partial(b)])
    est = fl.classification.NaiveBayes(features_col="x")
    with pytest.raises(ValueError, match="NaiveBayes: the parts of the input hold feature vectors of different sizes"):
        est.finish(est.merge([est.partial(a), est.partial(b)]))


def test_states_of_another_configuration_are_refused():
    a = F.StringIndexer(input_cols=["city"], output_cols=["ci"]).partial(TABLE)
    with pytest.raises(ValueError, match=r"StringIndexer: a fit state .* does not belong to input_cols \['n'\]"):
        F.StringIndexer(input_cols=["n"], output_cols=["ni"]).finish(a)
    a = F.Imputer(input_cols=["a"], output_cols=["a"]).partial(TABLE)
    with pytest.raises(ValueError, match=r"Imputer: a fit state .* expected a state of strategy 'median'"):
        F.Imputer(input_cols=["a"], output_cols=["a"], strategy="median").finish(a)
    with pytest.raises(ValueError, match=r"NaiveBayes: a fit state has schema"):
        fl.classification.NaiveBayes().finish(a)


# ---------------------------------------------------------------------------------------------
# iterative estimators: a round is round_partial over batches + round_merge + an update

LINEAR_X = (D["x"] - D["x"].mean(axis=0)) / D["x"].std(axis=0)
LINEAR = pa.table({
    "features": fl.linalg.from_numpy(LINEAR_X), "sparse": fl.linalg.from_csr(D["sp"]),
    "binary": pa.array((D["label"] > 0).astype(float)), "label3": pa.array(D["label"]),
    "target": pa.array(LINEAR_X @ [1.0, -2.0, 0.5, 0.0] + D["b"]), "w": pa.array(np.linspace(0.0, 2.0, N)),
})
C = fl.classification
# (id, estimator, features column, number of outputs)
LINEAR_ROUNDS = [
    ("LogisticRegression", lambda: C.LogisticRegression(label_col="binary", weight_col="w", reg=0.1, elastic_net=0.3),
     "features", 1),
    ("LogisticRegression-multinomial", lambda: C.LogisticRegression(label_col="label3", reg=0.05), "features", 3),
    ("LogisticRegression-sparse", lambda: C.LogisticRegression(features_col="sparse", label_col="binary"), "sparse", 1),
    ("LinearRegression", lambda: fl.regression.LinearRegression(label_col="target", weight_col="w", reg=0.1), "features",
     1),
    ("LinearRegression-sparse", lambda: fl.regression.LinearRegression(features_col="sparse", label_col="target"),
     "sparse", 1),
    ("LinearSVC", lambda: C.LinearSVC(label_col="binary", reg=0.1, solver="sgd"), "features", 1),
    ("LinearSVC-sparse", lambda: C.LinearSVC(features_col="sparse", label_col="binary", weight_col="w"), "sparse", 1),
]
LINEAR_IDS = [c[0] for c in LINEAR_ROUNDS]


def _coefficients(est, features: str, k: int, seed: int = 0) -> pa.Table:
    from flowlearn.optim import linear_model_table

    d = 4 if features == "features" else 6
    rng = np.random.default_rng(seed)
    return linear_model_table(rng.standard_normal((k, d)) * 0.5, rng.standard_normal(k) * 0.3)


def _read_state(state: pa.Table) -> tuple[float, float, np.ndarray, np.ndarray]:
    row = state.to_pylist()[0]
    return row["weight"], row["loss"], np.array(row["coefficient_gradient"]), np.array(row["intercept_gradient"])


def _numpy_round(est, features: str, W: np.ndarray, b: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Weighted loss and gradient sums of the whole table, written here with NumPy."""
    X = D["sp"].toarray() if features == "sparse" else LINEAR_X
    y = LINEAR.column(est.label_col).to_numpy()
    s = LINEAR.column("w").to_numpy() if est.weight_col else np.ones(N)
    Z = X @ W.T + b
    loss_name = {"LogisticRegression": "logistic" if W.shape[0] == 1 else "multinomial",
                 "LinearRegression": "squared", "LinearSVC": "hinge"}[type(est).__name__]
    if loss_name == "logistic":
        z = Z[:, 0]
        loss, R = np.logaddexp(0.0, z) - y * z, (1.0 / (1.0 + np.exp(-z)) - y)[:, None]
    elif loss_name == "multinomial":
        P = np.exp(Z - Z.max(axis=1, keepdims=True))
        P /= P.sum(axis=1, keepdims=True)
        loss = -np.log(P[np.arange(N), y.astype(int)])
        R = P.copy()
        R[np.arange(N), y.astype(int)] -= 1.0
    elif loss_name == "squared":
        r = Z[:, 0] - y
        loss, R = 0.5 * r * r, r[:, None]
    else:
        t = 2.0 * y - 1.0
        m = t * Z[:, 0]
        loss, R = np.maximum(0.0, 1.0 - m), np.where(m <= 1.0, -t, 0.0)[:, None]
    R = R * s[:, None]
    return float(s.sum()), float(s @ loss), (R.T @ X).reshape(-1), R.sum(axis=0)


def test_every_iterative_estimator_is_covered():
    covered = {type(make()).__name__ for _, make, _, _ in LINEAR_ROUNDS} | {"KMeans"}
    assert covered == {"LogisticRegression", "LinearRegression", "LinearSVC", "KMeans"}
    assert all(isinstance(make(), IterativeEstimator) for _, make, _, _ in LINEAR_ROUNDS)
    assert isinstance(fl.clustering.KMeans(), IterativeEstimator)


def test_every_batch_estimator_follows_a_fit_protocol():
    """A new flowlearn estimator is one-pass or iterative (and then belongs in the lists above),
    unless it trains online, composes other stages, or needs its whole input at once."""
    from flowlearn.api import _REGISTRY
    from flowlearn.iteration.online import OnlineEstimator

    # OnlineLearning trains a pipeline online; model selection fits its candidates, which follow
    # their own protocols; FPGrowth mines itemsets over all transactions at once (its input is
    # read by the engine and the mining runs in one place, as Spark's FP-growth runs per partition
    # of a shuffled conditional tree)
    composite = {"Pipeline", "Graph", "OnlineLearning", "CrossValidator", "TrainValidationSplit", "FPGrowth"}
    for cls in set(_REGISTRY.values()):
        if (issubclass(cls, fl.Estimator) and cls.__module__.startswith("flowlearn.") and cls.__name__ not in composite
                and not issubclass(cls, OnlineEstimator) and cls not in (fl.Estimator, OnePassEstimator,
                                                                           IterativeEstimator)):
            assert issubclass(cls, (OnePassEstimator, IterativeEstimator)), cls


@pytest.mark.parametrize("name, make, features, k", LINEAR_ROUNDS, ids=LINEAR_IDS)
@PROPERTY
@given(cuts=st.lists(st.integers(0, N), max_size=6), grouping=st.lists(st.integers(0, 10), max_size=8),
       through_ipc=st.booleans(), seed=st.integers(0, 100))
def test_linear_round_equals_merged_partials_of_any_split(name, make, features, k, cuts, grouping, through_ipc, seed):
    est = make()
    variables = _coefficients(est, features, k, seed)
    states = [est.round_partial(variables, p) for p in _parts(LINEAR, cuts)]
    if through_ipc:
        states = [_ipc(s) for s in states]
    while len(states) > 1:  # adjacent merges in an order given by grouping
        i = (grouping.pop() if grouping else 0) % (len(states) - 1)
        states[i:i + 2] = [est.round_merge(states[i:i + 2])]
    got = _read_state(states[0])
    W, b, _ = _wb(variables)
    want = _numpy_round(est, features, W, b)
    assert got[0] == pytest.approx(want[0], rel=1e-14)
    assert got[1] == pytest.approx(want[1], rel=1e-12)
    np.testing.assert_allclose(got[2], want[2], rtol=1e-11, atol=1e-12 * np.abs(want[2]).max())
    np.testing.assert_allclose(got[3], want[3], rtol=1e-11, atol=1e-12 * max(1.0, np.abs(want[3]).max()))


def _wb(variables: pa.Table) -> tuple[np.ndarray, np.ndarray, int]:
    from flowlearn.optim import read_linear_model_table

    return read_linear_model_table([variables], "test")


@pytest.mark.parametrize("name, make, features, k", LINEAR_ROUNDS, ids=LINEAR_IDS)
def test_linear_round_one_row_and_empty_parts_and_the_fit_objective(name, make, features, k):
    from flowlearn.optim import LOSSES, LinearObjective

    est = make()
    variables = _coefficients(est, features, k)
    whole = est.round_partial(variables, LINEAR)
    one_row = est.round_merge([est.round_partial(variables, LINEAR.slice(i, 1)) for i in range(N)])
    empty = est.round_partial(variables, LINEAR.slice(0, 0))
    assert _read_state(empty)[:2] == (0.0, 0.0)
    with_empties = est.round_merge([empty, est.round_partial(variables, LINEAR.slice(0, 9)), empty,
                                    est.round_partial(variables, LINEAR.slice(9)), empty])
    for state in (one_row, with_empties):
        for a, b in zip(_read_state(state), _read_state(whole)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-13)
    # the driver's value and gradient are the fit's own objective (LinearObjective.smooth)
    W, b, _ = _wb(variables)
    X = D["sp"] if features == "sparse" else LINEAR_X
    y, s = LINEAR.column(est.label_col).to_numpy(), (LINEAR.column("w").to_numpy() if est.weight_col else None)
    loss = {1: "logistic", 3: "multinomial"}[k] if isinstance(est, C.LogisticRegression) else \
        ("squared" if isinstance(est, fl.regression.LinearRegression) else "hinge")
    l2 = est.reg * (1 - est.elastic_net)
    with LinearObjective(X, y, s, loss, k, est.fit_intercept, l2, est.reg * est.elastic_net) as obj:
        f, g = obj.smooth(obj.pack(W, b))
        assert obj.kind == LOSSES[loss]
    value, grad = est.round_objective(variables, whole)
    assert value == pytest.approx(f, rel=1e-12)
    np.testing.assert_allclose(grad, g, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name, make, features, k", [c for c in LINEAR_ROUNDS if "SVC" not in c[0]],
                         ids=[c[0] for c in LINEAR_ROUNDS if "SVC" not in c[0]])
def test_an_lbfgs_driver_on_round_partials_reaches_the_fit(name, make, features, k):
    """An engine's driver: L-BFGS (OWL-QN with an L1 part) asking for rounds whose partials run over
    three parts of the input reaches the model fit finds (both to tol=1e-10)."""
    from flowlearn.optim import linear_model_table, minimize_lbfgs

    est = make()
    est.set(tol=1e-10, max_iter=500, solver="lbfgs")
    parts = _parts(LINEAR, [10, 30])
    d = 4 if features == "features" else 6

    def variables_of(theta):
        return linear_model_table(theta[:k * d].reshape(k, d), theta[k * d:] if est.fit_intercept else np.zeros(k))

    def fun(theta):
        v = variables_of(theta)
        return est.round_objective(v, est.round_merge([est.round_partial(v, p) for p in parts]))

    l1 = np.r_[np.full(k * d, est.reg * est.elastic_net), np.zeros(k)]
    res = minimize_lbfgs(fun, np.zeros(k * d + k), max_iter=500, tol=1e-10, l1=l1)
    (md,) = est.fit(LINEAR).get_model_data()
    W, b = fl.linalg.to_numpy(md.column("coefficient")), md.column("intercept").to_numpy()
    got_W, got_b = res.x[:k * d].reshape(k, d), res.x[k * d:]
    if k > 1:  # the fit centres the (shift-invariant) multinomial intercepts
        got_b = got_b - got_b.mean()
    np.testing.assert_allclose(got_W, W, atol=1e-6)
    np.testing.assert_allclose(got_b, b, atol=1e-6)


@pytest.mark.parametrize("name, make, features, k", LINEAR_ROUNDS, ids=LINEAR_IDS)
def test_sgd_round_update_is_a_proximal_step(name, make, features, k):
    """round_update: W - lr * G / weight, soft-thresholded by lr * l1 and shrunk by 1 / (1 + lr * l2)."""
    est = make()
    est.set(learning_rate=0.3)
    variables = _coefficients(est, features, k, seed=4)
    batch = LINEAR.slice(5, 8)  # a mini-batch
    state = est.round_merge([est.round_partial(variables, batch.slice(0, 3)), est.round_partial(variables, batch.slice(3))])
    weight, _, G, gb = _read_state(state)
    W, b, _ = _wb(variables)
    l2, l1 = est.reg * (1 - est.elastic_net), est.reg * est.elastic_net
    W = W - 0.3 * G.reshape(W.shape) / weight
    W = np.sign(W) * np.maximum(np.abs(W) - 0.3 * l1, 0.0) / (1.0 + 0.3 * l2)
    b = b - 0.3 * gb / weight
    got_W, got_b, _ = _wb(est.round_update(variables, state))
    np.testing.assert_allclose(got_W, W, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(got_b, b, rtol=1e-14, atol=1e-15)


def test_linear_round_refuses_labels_and_sizes_the_variables_do_not_fit():
    est = C.LogisticRegression(label_col="label3")
    with pytest.raises(ValueError, match=r"LogisticRegression: column 'label3' \(parameter 'label_col'\) has label "
                                         r"2.0 at row \d+; the round's model has 2 classes"):
        est.round_partial(_coefficients(est, "features", 2), LINEAR)
    with pytest.raises(ValueError, match=r"LogisticRegression: column 'label3' .* binomial logistic regression needs "
                                         r"labels 0 or 1"):
        est.round_partial(_coefficients(est, "features", 1), LINEAR)
    with pytest.raises(ValueError, match=r"LinearRegression: column 'features' \(parameter 'features_col'\) holds "
                                         r"vectors of size 4, the round's coefficients have size 6"):
        fl.regression.LinearRegression(label_col="target").round_partial(_coefficients(est, "sparse", 1), LINEAR)
    est = fl.regression.LinearRegression(label_col="target")
    with pytest.raises(ValueError, match=r"LinearRegression: round states of different shapes"):
        est.round_merge([est.round_partial(_coefficients(est, "features", 1), LINEAR),
                         est.round_partial(_coefficients(est, "sparse", 1), LINEAR.slice(0, 0))])
    with pytest.raises(ValueError, match=r"LinearRegression: the round's weights sum to 0.0"):
        est.round_objective(_coefficients(est, "features", 1),
                            est.round_partial(_coefficients(est, "features", 1), LINEAR.slice(0, 0)))


KMEANS = [("dense", "x", "euclidean"), ("sparse", "sp", "euclidean"), ("cosine", "x", "cosine"),
          ("manhattan", "x", "manhattan")]


def _numpy_assign(x: np.ndarray, c: np.ndarray, measure: str) -> np.ndarray:
    if measure == "euclidean":
        dist = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2)
    elif measure == "manhattan":
        dist = np.abs(x[:, None, :] - c[None, :, :]).sum(axis=2)
    else:
        nx, nc = np.linalg.norm(x, axis=1)[:, None], np.linalg.norm(c, axis=1)[None, :]
        dist = 1.0 - np.divide(x @ c.T, nx * nc, out=np.zeros((len(x), len(c))), where=(nx * nc) > 0)
    return np.argmin(dist, axis=1)


@pytest.mark.parametrize("name, col, measure", KMEANS, ids=[k[0] for k in KMEANS])
@PROPERTY
@given(cuts=st.lists(st.integers(0, N), max_size=6), through_ipc=st.booleans())
def test_kmeans_round_equals_merged_partials_of_any_split(name, col, measure, cuts, through_ipc):
    est = fl.clustering.KMeans(k=4, seed=2, features_col=col, distance_measure=measure)
    variables = est.initial_centroids(TABLE)
    states = [est.round_partial(variables, p) for p in _parts(TABLE, cuts)]
    if through_ipc:
        states = [_ipc(s) for s in states]
    state = est.round_merge(states)
    x = D["sp"].toarray() if col == "sp" else D["x"]
    c = fl.linalg.to_numpy(variables.column("centroids"))
    assign = _numpy_assign(x, c, measure)
    np.testing.assert_array_equal(state.column("counts").to_numpy(), np.bincount(assign, minlength=4))
    sums = np.array([x[assign == j].sum(axis=0) for j in range(4)])
    np.testing.assert_allclose(fl.linalg.to_numpy(state.column("sums")), sums, rtol=1e-13, atol=1e-12)
    new, shift = est.round_update(variables, state)
    counts = np.bincount(assign, minlength=4)
    want = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], c)
    np.testing.assert_allclose(fl.linalg.to_numpy(new.column("centroids")), want, rtol=1e-13, atol=1e-12)
    assert new.column("weights").to_numpy().tolist() == counts.tolist()
    assert shift == pytest.approx(np.sqrt(((want - c) ** 2).sum(axis=1)).max(), rel=1e-12)


@pytest.mark.parametrize("name, col, measure", KMEANS, ids=[k[0] for k in KMEANS])
def test_a_kmeans_driver_on_round_partials_reaches_the_fit(name, col, measure):
    """An engine's driver: rounds of partials over one-row and empty parts, merges and updates until
    no centroid moves more than tol (or max_iter) give the model fit gives."""
    est = fl.clustering.KMeans(k=4, seed=5, features_col=col, distance_measure=measure, max_iter=50, tol=1e-9)
    variables = est.initial_centroids(TABLE)
    parts = [TABLE.slice(i, 1) for i in range(N)] + [TABLE.slice(0, 0)]
    for _ in range(est.max_iter):
        state = est.round_merge([est.round_partial(variables, p) for p in parts])
        variables, shift = est.round_update(variables, state)
        if shift <= est.tol:
            break
    (md,) = est.fit(TABLE).get_model_data()
    np.testing.assert_allclose(fl.linalg.to_numpy(variables.column("centroids")), fl.linalg.to_numpy(md.column("centroids")),
                               rtol=1e-12, atol=1e-12)
    assert variables.column("weights").equals(md.column("weights"))


# ---------------------------------------------------------------------------------------------
# docs


def test_architecture_fits_examples_run():
    run_doc_examples("architecture.md", "Fits")


@pytest.mark.parametrize("make, K", [
    (lambda: fl.classification.LogisticRegression(reg=0.05, elastic_net=0.3, tol=1e-9), 1),
    (lambda: fl.classification.LogisticRegression(reg=0.05, multi_class="multinomial", tol=1e-9), 3),
    (lambda: fl.regression.LinearRegression(reg=0.1, tol=1e-9), 1),
], ids=["binomial-elastic-net", "multinomial", "linear-regression"])
def test_fit_rounds_on_batch_partials_reaches_the_fit(make, K):
    """The driver an engine calls: fit_rounds with map_batches over three parts of the input (in
    process here) gives the model fit gives, to the solver's tolerance."""
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 4))
    y = (x @ [1.0, -1.0, 0.5, 0.0] > 0).astype(float) + (x[:, 3] > 1.0) * (K - 1)
    if isinstance(make(), fl.regression.LinearRegression):
        y = x @ [1.0, -1.0, 0.5, 0.0] + 0.3 + 0.1 * rng.normal(size=300)
    t = fl.table({"features": fl.linalg.from_numpy(x), "label": y})
    parts = [t.slice(0, 100), t.slice(100, 150), t.slice(250)]
    est = make()
    assert est.drives_rounds and not fl.classification.LinearSVC().drives_rounds
    got = est.fit_rounds(lambda fn, name="round": [fn(p) for p in parts])
    want = make().fit(t)
    (g,), (w,) = got.get_model_data(), want.get_model_data()
    np.testing.assert_allclose(fl.linalg.to_numpy(g.column("coefficient")), fl.linalg.to_numpy(w.column("coefficient")),
                               atol=1e-6)
    np.testing.assert_allclose(g.column("intercept").to_numpy(), w.column("intercept").to_numpy(), atol=1e-6)
    assert type(got) is type(want) and got.get_params() == want.get_params()
