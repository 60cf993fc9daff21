"""fl.linalg.to_numpy on every vector column layout (issue 11, item 5): the NumPy array is the
values as written, whatever the Arrow layout."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps

import flowlearn as fl
from flowlearn.linalg import to_numpy

WANT = np.array([[1.0, 0.0, 2.5], [0.0, -3.0, 4.0], [5.0, 6.0, 0.0]])
ROWS = WANT.tolist()


def layouts():
    yield "fixed_size_list<double>", pa.array(ROWS, pa.list_(pa.float64(), 3))
    yield "fixed_size_list<float>", pa.array(ROWS, pa.list_(pa.float32(), 3))
    yield "list<double>", pa.array(ROWS, pa.list_(pa.float64()))
    yield "large_list<double>", pa.array(ROWS, pa.large_list(pa.float64()))
    yield "list<int64>", pa.array([[1, 0, 2], [0, -3, 4], [5, 6, 0]], pa.list_(pa.int64()))
    yield "sparse", fl.linalg.from_csr(sps.csr_matrix(WANT))
    yield "chunked", pa.chunked_array([pa.array(ROWS[:1], pa.list_(pa.float64(), 3)),
                                       pa.array(ROWS[1:], pa.list_(pa.float64(), 3))])
    yield "sliced list", pa.array([[9.0, 9.0, 9.0]] + ROWS, pa.list_(pa.float64())).slice(1)
    if hasattr(pa, "list_view"):
        yield "list_view<double>", pa.array(ROWS, pa.list_view(pa.float64()))


@pytest.mark.parametrize("name,col", list(layouts()), ids=[n for n, _ in layouts()])
def test_every_layout_gives_the_values(name, col):
    got = to_numpy(col)
    want = np.array([[1, 0, 2], [0, -3, 4], [5, 6, 0]], dtype=float) if "int" in name else WANT
    assert got.dtype == np.float64 and got.shape == (3, 3)
    np.testing.assert_array_equal(got, want)


def test_table_column_of_a_fitted_model_and_errors():
    t = fl.table({"features": [[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]], "label": [0.0, 0.0, 1.0, 1.0]})
    out = fl.classification.LogisticRegression(reg=0.1).fit(t).transform(t)
    p = to_numpy(out["raw_prediction"])
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert (p[:, 1] > 0.5).tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match="column 'v' has a null vector at row 1"):
        to_numpy(pa.array([[1.0], None], pa.list_(pa.float64(), 1)), "v")
    with pytest.raises(TypeError, match="column 'label' has type double, expected a vector column"):
        to_numpy(out["label"], "label")
    assert to_numpy(pa.chunked_array([], pa.list_(pa.float64(), 3))).shape == (0, 3)
