"""RandomSplitter: every row lands in exactly one output, in input order; the split is
deterministic given the seed; the outputs' sizes follow the weights (a chi-squared goodness of fit
test from SciPy on 100,000 rows, and each row's output independent of its neighbours'); a stream
split batch by batch equals the split of the whole table."""
import numpy as np
import pyarrow as pa
import pytest
import scipy.stats

import flowlearn as fl
from flowlearn.feature.splitter import RandomSplitter


def ids(parts):
    return [p.column("id").to_numpy() for p in parts]


def test_rows_partitioned_exactly_in_order():
    t = pa.table({"id": np.arange(10_000), "v": fl.linalg.from_numpy(np.random.default_rng(0).random((10_000, 2)))})
    parts = RandomSplitter(weights=[1.0, 2.0, 7.0], seed=3).transform(t)
    assert len(parts) == 3 and all(p.schema.equals(t.schema) for p in parts)
    got = ids(parts)
    assert sorted(np.concatenate(got).tolist()) == list(range(10_000))
    assert all((np.diff(g) > 0).all() for g in got)  # input order kept, no row twice
    for p in parts:  # the other columns travel with their rows
        np.testing.assert_array_equal(fl.linalg.to_numpy(p.column("v")),
                                      fl.linalg.to_numpy(t.column("v"))[p.column("id").to_numpy()])


def test_deterministic_given_seed():
    t = pa.table({"id": np.arange(5000)})
    a = ids(RandomSplitter(seed=42).transform(t))
    b = ids(RandomSplitter(seed=42).transform(t))
    c = ids(RandomSplitter(seed=43).transform(t))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    d = ids(RandomSplitter().transform(t))  # seed None: a fixed default
    assert all(np.array_equal(x, y) for x, y in zip(d, ids(RandomSplitter().transform(t))))


@pytest.mark.parametrize("weights,seed", [([1.0, 1.0], 0), ([1.0, 2.0, 7.0], 1), ([0.05, 0.95], 2)])
def test_proportions_follow_the_weights(weights, seed):
    n = 100_000
    parts = RandomSplitter(weights=weights, seed=seed).transform(pa.table({"id": np.arange(n)}))
    counts = np.array([p.num_rows for p in parts])
    expected = n * np.asarray(weights) / sum(weights)
    assert scipy.stats.chisquare(counts, expected).pvalue > 1e-4
    # each row's output does not depend on the previous row's: the transition counts between
    # consecutive rows are independent (chi-squared test of the contingency table)
    label = np.empty(n, int)
    for i, g in enumerate(ids(parts)):
        label[g] = i
    k = len(weights)
    table = np.zeros((k, k))
    np.add.at(table, (label[:-1], label[1:]), 1)
    assert scipy.stats.chi2_contingency(table).pvalue > 1e-4


def test_stream_split_equals_table_split():
    t = pa.table({"id": np.arange(1000)})
    want = ids(RandomSplitter(weights=[3.0, 1.0], seed=9).transform(t))
    out = RandomSplitter(weights=[3.0, 1.0], seed=9).transform(fl.stream.from_table(t, batch_size=64))
    main, side = out.collect(), out.side_output("output_1").collect()
    fl.stream.run(main, side).wait()
    got = [main.result().column("id").to_numpy(), side.result().column("id").to_numpy()]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(np.sort(g), w)


def test_empty_table_and_bad_weights():
    parts = RandomSplitter(seed=1).transform(pa.table({"id": pa.array([], pa.int64())}))
    assert [p.num_rows for p in parts] == [0, 0]
    with pytest.raises(ValueError, match=r"RandomSplitter: parameter 'weights' = \[1.0\] must hold at least two"):
        RandomSplitter(weights=[1.0]).transform(pa.table({"id": [1, 2]}))
    with pytest.raises(ValueError, match=r"parameter 'weights' = \[1.0, 0.0\] violates gt\(0\)"):
        RandomSplitter(weights=[1.0, 0.0])
    with pytest.raises(TypeError, match="takes exactly one input table"):
        RandomSplitter().transform(pa.table({"id": [1]}), pa.table({"id": [2]}))
