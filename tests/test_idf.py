"""IDF / IDFModel beyond tests/test_text_features.py: chunked sparse input, states and model data
read from their Arrow buffers. Oracles: scikit-learn's TfidfTransformer(smooth_idf=True,
norm=None), whose idf is flowlearn's plus 1, and the closed form log((m + 1) / (df + 1))."""
import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sps
from sklearn.datasets import load_digits
from sklearn.feature_extraction.text import TfidfTransformer

import flowlearn as fl
from flowlearn.feature.term_frequency import IDF, IDFModel


def test_chunked_sparse_input_equals_sklearn():
    x = sps.csr_matrix(load_digits().data)   # counts 0..16 per pixel: a term-frequency-like matrix
    col = fl.linalg.from_csr(x)
    t = pa.table({"tf": pa.chunked_array([col.slice(0, 700), col.slice(700, 0), col.slice(700)])})
    model = IDF(input_col="tf", output_col="w").fit(t)
    sk = TfidfTransformer(smooth_idf=True, norm=None).fit(x)
    idf = np.array(model.get_model_data()[0].column("idf")[0].as_py())
    np.testing.assert_allclose(idf, sk.idf_ - 1.0, rtol=1e-13, atol=1e-15)
    got = model.transform(t).column("w")
    assert fl.linalg.is_sparse(got.type)
    want = x.multiply(sk.idf_ - 1.0).tocsr()
    np.testing.assert_allclose(fl.linalg.to_csr(got).toarray(), want.toarray(), rtol=1e-13, atol=1e-15)
    df = np.asarray((x > 0).sum(axis=0)).ravel()
    assert model.get_model_data()[0].column("doc_freq")[0].as_py() == df.tolist()


def test_state_and_model_data_errors_are_named():
    est = IDF(input_col="v", output_col="o")
    bad = pa.table({"num_docs": pa.array([3], pa.int64()), "doc_freq": pa.array([None], pa.list_(pa.int64()))})
    with pytest.raises(ValueError, match=r"IDF: fit state column 'doc_freq' has a null list at row 0"):
        est.finish(bad)
    with pytest.raises(ValueError, match=r"IDFModel: model data column 'idf' has type double, expected one vector"):
        IDFModel().set_model_data(pa.table({"idf": [1.0], "doc_freq": [[1]], "num_docs": [2]}))
    with pytest.raises(ValueError, match=r"IDFModel: model data column 'idf' holds NaN or infinity"):
        IDFModel().set_model_data({"idf": [[1.0, float("nan")]], "doc_freq": [[1, 1]], "num_docs": [2]})
