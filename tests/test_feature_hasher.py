"""FeatureHasher and its MurmurHash3_x86_32 kernel.

Oracles: published MurmurHash3_x86_32 test vectors, ``sklearn.utils.murmurhash3_32`` and
scikit-learn's FeatureHasher (fed UTF-16LE feature names, which is what Flink ML's Guava
``hashUnencodedChars`` hashes), and Flink ML's published FeatureHasherTest expectations.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
datasets = pytest.importorskip("river.datasets")  # River (an oracle) lives only in the main test env
from sklearn.feature_extraction import FeatureHasher as SkFeatureHasher
from sklearn.utils import murmurhash3_32

import flowlearn as fl
from flowlearn.feature import FeatureHasher
from flowlearn.feature.assemblers import _hash_strings, _murmurhash3_32
from flowlearn.linalg import SparseVector, is_sparse, to_csr

# (data, seed, MurmurHash3_x86_32) from SMHasher / the reference implementation's published checks
VECTORS = [
    (b"", 0, 0), (b"", 1, 0x514E28B7), (b"", 0xFFFFFFFF, 0x81F16F39), (b"\0\0\0\0", 0, 0x2362F9DE),
    (b"aaaa", 0x9747B28C, 0x5A97808A), (b"aaa", 0x9747B28C, 0x283E0130), (b"aa", 0x9747B28C, 0x5D211726),
    (b"a", 0x9747B28C, 0x7FA09EA6), (b"abcd", 0x9747B28C, 0xF0478627), (b"Hello, world!", 0x9747B28C, 0x24884CBA),
    (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
]


def flink_index(s: str, n: int) -> int:
    """Flink ML: Math.floorMod(Math.abs(murmur3_32(0).hashUnencodedChars(s)), n), via sklearn's murmur."""
    h = murmurhash3_32(s.encode("utf-16-le", "surrogatepass"), seed=0)
    return (abs(h) if h != -2**31 else h) % n


@pytest.fixture(scope="module")
def solar() -> pa.Table:
    return fl.table([x for x, _ in datasets.SolarFlare()])


@pytest.mark.parametrize("data,seed,want", VECTORS)
def test_murmur3_published_vectors(data, seed, want):
    assert _murmurhash3_32(data, seed) & 0xFFFFFFFF == want


def test_murmur3_against_sklearn():
    rng = np.random.default_rng(0)
    for n in list(range(0, 40)) + [255, 1000]:
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        seed = int(rng.integers(0, 2**32))
        assert _murmurhash3_32(data, seed) == murmurhash3_32(data, seed=seed)


def test_utf8_kernel_hashes_utf16_code_units():
    strings = ["", "a", "ab", "Oslo", "Zürich", "日本語", "\U0001f600x", "x" * 1000, "é" * 33, "a\x00b"]
    got = _hash_strings("col=", pa.array(strings), 262144)
    assert got.tolist() == [flink_index("col=" + s, 262144) for s in strings]
    # sliced arrays and odd feature counts
    got = _hash_strings("", pa.array(strings).slice(3, 4), 7)
    assert got.tolist() == [flink_index(s, 7) for s in strings[3:7]]


def test_params():
    fh = FeatureHasher()
    assert fh.output_col == "output" and fh.categorical_cols == [] and fh.num_features == 262144
    fh.set(input_cols=["f0", "f1", "f2"], output_col="vec", categorical_cols=["f0", "f2"], num_features=1000)
    assert fh.get_params()["categorical_cols"] == ["f0", "f2"]
    with pytest.raises(ValueError, match=r"num_features' = 0 violates gt\(0\)"):
        FeatureHasher(num_features=0)
    with pytest.raises(ValueError, match=r"'categorical_cols' names \['z'\], which are not in 'input_cols'"):
        FeatureHasher(input_cols=["a"], categorical_cols=["z"]).transform({"a": [1.0]})


@pytest.mark.parametrize("categorical", [["f0", "f2"], []])
@pytest.mark.parametrize("f1_type", [pa.float64(), pa.int32()])
def test_flink_ml_published_expectations(categorical, f1_type, tmp_path):
    t = pa.table({"id": [0, 1], "f0": ["a", "c"], "f1": pa.array([1, 1], f1_type), "f2": [True, False]})
    fh = FeatureHasher(input_cols=["f0", "f1", "f2"], output_col="vec", categorical_cols=categorical,
                       num_features=1000)
    fh.save(str(tmp_path / "fh"))
    out = fl.load(str(tmp_path / "fh")).transform(t)
    assert out.column_names == ["id", "f0", "f1", "f2", "vec"] and is_sparse(out.schema.field("vec").type)
    assert out.column("vec").to_pylist() == [
        {"size": 1000, "indices": [607, 635, 913], "values": [1.0, 1.0, 1.0]},
        {"size": 1000, "indices": [242, 869, 913], "values": [1.0, 1.0, 1.0]},
    ]


def _sk_pairs(rows, cols, categorical):
    out = []
    for r in rows:
        pairs = []
        for c in cols:
            v = r[c]
            if v is None:
                continue
            if isinstance(v, str) or c in categorical:
                pairs.append(((f"{c}={v}").encode("utf-16-le"), 1.0))
            else:
                pairs.append((c.encode("utf-16-le"), float(v)))
        out.append(pairs)
    return out


@pytest.mark.parametrize("num_features", [16, 1000, 262144])
def test_against_sklearn_feature_hasher(solar, num_features):
    cols = solar.column_names
    categorical = ["activity", "area"]  # int columns hashed as "col=3"
    fh = FeatureHasher(input_cols=cols, categorical_cols=categorical, output_col="h", num_features=num_features)
    got = to_csr(fh.transform(solar).column("h"))
    want = SkFeatureHasher(n_features=num_features, input_type="pair", alternate_sign=False).transform(
        _sk_pairs(solar.to_pylist(), cols, categorical))
    assert got.shape == want.shape
    assert abs(got - want).max() == 0  # collisions summed in both (sparse compare: 262144 columns)


def test_nulls_floats_and_dictionary_columns():
    t = pa.table({"s": pa.array(["x", None, "y"]).dictionary_encode(), "d": pa.array([1.5, None, -0.0]),
                  "k": pa.array([0.1, 1e7, None], pa.float64()), "b": pa.array([True, None, False])})
    fh = FeatureHasher(input_cols=["s", "d", "k", "b"], categorical_cols=["k"], output_col="h", num_features=97)
    rows = fh.transform(t).column("h").to_pylist()

    def vec(entries):
        acc = {}
        for s, v in entries:
            acc[flink_index(s, 97)] = acc.get(flink_index(s, 97), 0.0) + v
        return {"size": 97, "indices": sorted(acc), "values": [acc[i] for i in sorted(acc)]}

    # categorical numbers use Java's Double.toString ("1.0E7"); a zero value is kept, as in Flink ML
    assert rows[0] == vec([("s=x", 1.0), ("d", 1.5), ("k=0.1", 1.0), ("b=true", 1.0)])
    assert rows[1] == vec([("k=1.0E7", 1.0)])
    assert rows[2] == vec([("s=y", 1.0), ("d", -0.0), ("b=false", 1.0)])


def test_bad_input_and_empty():
    with pytest.raises(TypeError, match="column 'v' .* FeatureHasher hashes numeric, string and boolean"):
        FeatureHasher(input_cols=["v"]).transform({"v": [[1.0, 2.0]]})
    with pytest.raises(ValueError, match="input column 'q' .* is missing"):
        FeatureHasher(input_cols=["q"]).transform({"v": [1.0]})
    empty = pa.table({"a": pa.array([], pa.string()), "b": pa.array([], pa.float64())})
    out = FeatureHasher(input_cols=["a", "b"]).transform(empty)
    assert out.num_rows == 0 and is_sparse(out.schema.field("output").type)


def test_row_kernel_equals_batch(solar):
    cols = solar.column_names
    fh = FeatureHasher(input_cols=cols, categorical_cols=["activity"], output_col="h", num_features=64)
    batch = fh.transform(solar).column("h").to_pylist()
    fn = fh.row_fn()
    for r, want in zip(solar.to_pylist(), batch):
        fn(r)
        assert r["h"] == SparseVector(want["size"], want["indices"], want["values"])
    row = {c: None for c in cols}
    fn(row)
    assert row["h"] == SparseVector(64, [], [])
    row = {"zurich-class": "H", **{c: np.int64(1) for c in cols[1:]}}
    fn(row)
    # numpy scalars are numbers ("col" with value 1.0) or, in categorical_cols, categories ("activity=1")
    acc: dict = {}
    for name, value in [("zurich-class=H", 1.0), ("activity=1", 1.0)] + [(c, 1.0) for c in cols[1:] if c != "activity"]:
        acc[flink_index(name, 64)] = acc.get(flink_index(name, 64), 0.0) + value
    assert row["h"] == SparseVector(64, sorted(acc), [acc[i] for i in sorted(acc)])
    with pytest.raises(TypeError, match="holds \\[1\\] of type list"):
        fn({**{c: 1 for c in cols}, "area": [1]})
    with pytest.raises(ValueError, match="input column 'area' .* is missing"):
        fn({c: 1 for c in cols if c != "area"})


def test_row_kernel_types():
    fh = FeatureHasher(input_cols=["s", "n", "b", "k"], categorical_cols=["k"], output_col="h", num_features=50)
    t = pa.table({"s": ["é"], "n": [2.5], "b": [True], "k": [3]})
    want = fh.transform(t).column("h").to_pylist()[0]
    fn = fh.row_fn()
    for row in ({"s": "é", "n": 2.5, "b": True, "k": 3}, {"s": "é", "n": np.float64(2.5), "b": np.bool_(True),
                                                         "k": np.int64(3)}):
        fn(row)
        assert row["h"] == SparseVector(want["size"], want["indices"], want["values"])
