"""Text feature stages against independent oracles: Flink ML's published test vectors, Java's split
semantics written out with Python's ``re``, scikit-learn (``CountVectorizer``, ``TfidfTransformer``,
``murmurhash3_32``) and closed forms, on real text (the docstrings shipped with Python's standard
library)."""
import collections
import json
import re

import numpy as np
import pyarrow as pa
import pytest

from flowlearn.feature.term_frequency import IDF, CountVectorizer, CountVectorizerModel, HashingTF
from flowlearn.feature.text import NGram, RegexTokenizer, StopWordsRemover, Tokenizer, load_default_stop_words
from flowlearn.linalg import SparseVector, from_csr, to_csr, vectors_to_array

sklearn_text = pytest.importorskip("sklearn.feature_extraction.text")
from sklearn.utils import murmurhash3_32  # noqa: E402

TOKENS = pa.list_(pa.string())


@pytest.fixture(scope="module")
def docs():
    """Real English text: the docstrings of a few standard-library modules, one per paragraph."""
    import argparse
    import collections as coll
    import json as js
    import textwrap

    out = []
    for mod in (argparse, coll, js, textwrap, re):
        for obj in vars(mod).values():
            doc = getattr(obj, "__doc__", None)
            if isinstance(doc, str):
                out += [p for p in doc.split("\n\n") if p.strip()]
    assert len(out) > 200
    return out


def java_split(s, regex):
    """Java's String.split(regex): no match gives [s]; a zero-width match at the start gives no
    leading empty string; trailing empty strings are removed."""
    first = re.search(regex, s)
    if first is None:
        return [s]
    parts = re.split(regex, s)
    if first.end() == 0 and parts[0] == "":
        parts = parts[1:]
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def tokens_table(lists):
    return pa.table({"w": pa.array(lists, TOKENS)})


# ------------------------------------------------------------------------------------- Tokenizer


def test_tokenizer_flink_published_vectors():
    out = Tokenizer(input_col="s", output_col="t").transform({"s": ["Test for tokenization.", "Te,st. punct"]})
    assert out.column("t").to_pylist() == [["test", "for", "tokenization."], ["te,st.", "punct"]]


def test_tokenizer_equals_java_split_on_real_text(docs):
    extra = ["", " lead", "trail  ", "a\tb\nc\x0bd\x0ce\rf", "   ", "İSTANBUL Straße", None]
    text = docs + extra
    out = Tokenizer(input_col="s", output_col="t").transform(pa.table({"s": pa.array(text, pa.string())}))
    expected = [None if s is None else java_split(s.lower(), r"[ \t\n\x0b\f\r]") for s in text]
    got = out.column("t").to_pylist()
    # str.lower maps İ to 'i̇' (full case mapping), Arrow (and Java's simple mapping in most locales) to 'i'
    assert got[:-2] == expected[:-2]
    assert got[-2] == ["istanbul", "straße"] and got[-1] is None
    assert out.schema.field("t").type == TOKENS


def test_tokenizer_bad_input_named():
    with pytest.raises(TypeError, match=r"Tokenizer: column 's' \(parameter 'input_col'\) has type double"):
        Tokenizer(input_col="s").transform({"s": [1.0]})
    with pytest.raises(ValueError, match=r"Tokenizer: input column 'x' \(parameter 'input_col'\) is missing"):
        Tokenizer(input_col="x").transform({"s": ["a"]})


# -------------------------------------------------------------------------------- RegexTokenizer


@pytest.mark.parametrize("kw, expected", [
    ({}, [["test", "for", "tokenization."], ["te,st.", "punct"]]),
    ({"to_lowercase": False}, [["Test", "for", "tokenization."], ["Te,st.", "punct"]]),
    ({"gaps": False, "pattern": r"\w+|\p{Punct}"}, [["test", "for", "tokenization", "."],
                                                     ["te", ",", "st", ".", "punct"]]),
    ({"gaps": False, "pattern": r"\w+|\p{Punct}", "min_token_length": 3}, [["test", "for", "tokenization"],
                                                                            ["punct"]]),
])
def test_regex_tokenizer_flink_published_vectors(kw, expected):
    rt = RegexTokenizer(input_col="s", output_col="t", **kw)
    assert rt.transform({"s": ["Test for tokenization.", "Te,st. punct"]}).column("t").to_pylist() == expected


@pytest.mark.parametrize("pattern, gaps, lower, min_len", [
    (r"\s+", True, True, 1),
    (r"[,.;:!?\s]+", True, False, 2),
    (r"\W+", True, True, 0),
    (r"\w+", False, True, 1),
    (r"[A-Za-z]+'?[a-z]*|\d+", False, False, 4),
    (r"\b\w", False, True, 1),
    (r"\b", True, False, 0),  # zero-width separators (Arrow's own regex split would never return)
    (r"", True, True, 1),
    (r"\s*", True, True, 1),
    (r"x*", False, True, 1),
])
def test_regex_tokenizer_equals_python_re_on_real_text(docs, pattern, gaps, lower, min_len):
    """Oracle: Python's re with ASCII classes (Java's default) and Java's split/find semantics."""
    text = docs + [None, "", "  x  "]
    rt = RegexTokenizer(input_col="s", output_col="t", pattern=pattern, gaps=gaps, to_lowercase=lower,
                        min_token_length=min_len)
    got = rt.transform(pa.table({"s": pa.array(text, pa.string())})).column("t").to_pylist()
    rx = re.compile(pattern, re.ASCII)
    for s, g in zip(text, got):
        if s is None:
            assert g is None
            continue
        s = s.lower() if lower else s
        toks = java_split(s, rx) if gaps else [m.group() for m in rx.finditer(s)]
        assert g == [tok for tok in toks if len(tok) >= min_len], s


def test_regex_tokenizer_length_counts_utf16_units_and_markers_fall_back():
    rt = RegexTokenizer(input_col="s", output_col="t", min_token_length=2)
    assert rt.transform({"s": ["\U0001F600 a bb"]}).column("t").to_pylist() == [["\U0001F600", "bb"]]
    rt = RegexTokenizer(input_col="s", output_col="t", gaps=False, pattern=r"\w+")
    assert rt.transform({"s": ["a\ufdd0b c", "d"]}).column("t").to_pylist() == [["a", "b", "c"], ["d"]]
    rt = RegexTokenizer(input_col="s", output_col="t", pattern=r"\s+|\b", min_token_length=0)
    text = ["a\ufdd0b  c ", " d", None]  # the marks in the input: matched row by row, as without them
    expected = [java_split(x, re.compile(r"\s+|\b", re.ASCII)) if x is not None else None for x in text]
    assert rt.transform({"s": text}).column("t").to_pylist() == expected


def test_regex_tokenizer_bad_pattern_named():
    with pytest.raises(ValueError, match=r"RegexTokenizer: parameter 'pattern' = '\(\?=a\)' violates re2_regex\(\)"):
        RegexTokenizer(pattern="(?=a)")


# ------------------------------------------------------------------------------ StopWordsRemover


def test_stop_words_remover_flink_published_vectors():
    raw = [["test", "test"], ["a", "b", "c", "d"], ["a", "the", "an"], ["A", "The", "AN"], [None], []]
    expected = [["test", "test"], ["b", "c", "d"], [], [], [None], []]
    out = StopWordsRemover(input_cols=["raw"], output_cols=["filtered"]).transform(tokens_table(raw).rename_columns(
        ["raw"]))
    assert out.column("filtered").to_pylist() == expected


def test_default_stop_words_are_flink_and_spark_english_list():
    words = load_default_stop_words()
    assert StopWordsRemover.load_default_stop_words("english") == words == StopWordsRemover().stop_words
    assert len(words) == 181 and len(set(words)) == 181
    assert words[:4] == ["i", "me", "my", "myself"] and words[-1] == "would"
    # Spark's and Flink ML's list augments NLTK's snowball list with contractions (nltk_data issue 22)
    assert {"won't", "wouldn't", "let's", "i'm"} <= set(words)
    with pytest.raises(ValueError, match="no default stop words for language 'klingon'"):
        load_default_stop_words("klingon")


@pytest.mark.parametrize("case_sensitive", [False, True])
def test_stop_words_remover_equals_set_filter_on_real_text(docs, case_sensitive):
    lists = [re.findall(r"\w+", d) for d in docs]
    stops = load_default_stop_words() + ["Return", "RETURN"]
    out = StopWordsRemover(input_cols=["w"], output_cols=["k"], stop_words=stops,
                           case_sensitive=case_sensitive).transform(tokens_table(lists))
    if case_sensitive:
        expected = [[w for w in ws if w not in set(stops)] for ws in lists]
    else:
        low = {s.lower() for s in stops}
        expected = [[w for w in ws if w.lower() not in low] for ws in lists]
    assert out.column("k").to_pylist() == expected


def test_stop_words_remover_turkish_locale_and_several_columns():
    t = pa.table({"a": pa.array([["KIŞ", "yaz"]], TOKENS), "b": pa.array([["DIŞ"]], TOKENS)})
    swr = StopWordsRemover(input_cols=["a", "b"], output_cols=["a2", "b2"], stop_words=["kış", "dış"])
    out = swr.transform(t)  # en_US: KIŞ lowers to "kiş", not a stop word
    assert out.column("a2").to_pylist() == [["KIŞ", "yaz"]] and out.column("b2").to_pylist() == [["DIŞ"]]
    out = swr.set(locale="tr_TR").transform(t)  # Turkish: I lowers to dotless ı
    assert out.column("a2").to_pylist() == [["yaz"]] and out.column("b2").to_pylist() == [[]]
    with pytest.raises(ValueError, match=r"parameter 'locale' = 'en US!' violates locale\(\)"):
        swr.set(locale="en US!")
    with pytest.raises(ValueError, match=r"'input_cols' \(2\) and 'output_cols' \(1\) must have the same length"):
        StopWordsRemover(input_cols=["a", "b"], output_cols=["x"]).transform(t)


# ----------------------------------------------------------------------------------------- NGram


def test_ngram_flink_published_vectors():
    t = tokens_table([[], ["a", "b", "c"], ["a", "b", "c", "d"]])
    assert NGram(input_col="w", output_col="g").transform(t).column("g").to_pylist() == \
        [[], ["a b", "b c"], ["a b", "b c", "c d"]]


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_ngram_equals_zip_on_real_text(docs, n):
    lists = [re.findall(r"\w+", d) for d in docs] + [None, [], ["x", None, "y"]]
    out = NGram(input_col="w", output_col="g", n=n).transform(tokens_table(lists)).column("g").to_pylist()
    for ws, g in zip(lists, out):
        if ws is None:
            assert g is None
            continue
        ws = ["null" if w is None else w for w in ws]  # Java's StringBuilder writes a null as "null"
        assert g == [" ".join(ws[i:i + n]) for i in range(len(ws) - n + 1)]


# ------------------------------------------------------------------------------------- HashingTF


def test_hashing_tf_flink_published_vectors():
    t = tokens_table([["HashingTFTest", "Hashing", "Term", "Frequency", "Test"],
                      ["HashingTFTest", "Hashing", "Hashing", "Test", "Test"]])
    out = HashingTF(input_col="w", output_col="v").transform(t).column("v").to_pylist()
    assert out == [{"size": 262144, "indices": [67564, 89917, 113827, 131486, 228971], "values": [1.0] * 5},
                   {"size": 262144, "indices": [67564, 131486, 228971], "values": [1.0, 2.0, 2.0]}]
    out = HashingTF(input_col="w", output_col="v", binary=True).transform(t).column("v").to_pylist()
    assert out[1] == {"size": 262144, "indices": [67564, 131486, 228971], "values": [1.0, 1.0, 1.0]}


def _flink_index(h, nf):
    return h % nf  # Java's nonNegativeMod; Python's % is already non-negative for nf > 0


@pytest.mark.parametrize("nf", [1, 20, 1000, 262144])
def test_hashing_tf_equals_murmur3_oracle_on_real_text(docs, nf):
    """Oracle: scikit-learn's MurmurHash3 (seed 0) of each term's UTF-16LE bytes (Guava's
    hashUnencodedChars), counted with collections.Counter."""
    lists = [re.findall(r"\S+", d) for d in docs] + [[], ["\U0001F600", "é", "日本"]]
    m = to_csr(HashingTF(input_col="w", output_col="v", num_features=nf).transform(tokens_table(lists)).column("v"))
    for r, ws in enumerate(lists):
        c = collections.Counter(_flink_index(murmurhash3_32(w.encode("utf-16-le"), seed=0), nf) for w in ws)
        row = m.getrow(r)
        assert dict(zip(row.indices.tolist(), row.data.tolist())) == {k: float(v) for k, v in c.items()}


def test_hashing_tf_numbers_and_booleans_hash_as_guava():
    nf = 1000
    ints = pa.table({"w": pa.array([[1, -5, 1], [2**40]], pa.list_(pa.int64()))})
    i32 = pa.table({"w": pa.array([[1, -5, 1]], pa.list_(pa.int32()))})
    dbl = pa.table({"w": pa.array([[1.5, -0.0]], pa.list_(pa.float64()))})
    bools = pa.table({"w": pa.array([[True, False, True]], pa.list_(pa.bool_()))})
    tf = HashingTF(input_col="w", output_col="v", num_features=nf)

    def expect(keys):
        c = collections.Counter(_flink_index(murmurhash3_32(k, seed=0), nf) for k in keys)
        return {k: float(v) for k, v in sorted(c.items())}

    def got(t, row=0):
        v = tf.transform(t).column("v").to_pylist()[row]
        return dict(zip(v["indices"], v["values"]))

    # hashLong: the 8 little-endian bytes; hashInt: 4 bytes (sklearn hashes an int32 key the same way)
    assert got(ints) == expect([np.int64(v).tobytes() for v in (1, -5, 1)])
    assert got(ints, 1) == expect([np.int64(2**40).tobytes()])
    assert got(i32) == expect([np.int32(1), np.int32(-5), np.int32(1)])
    assert got(dbl) == expect([np.float64(1.5).tobytes(), np.float64(-0.0).tobytes()])
    assert got(bools) == expect([np.int32(1), np.int32(0), np.int32(1)])


def test_hashing_tf_null_list_named_and_schema():
    tf = HashingTF(input_col="w", output_col="v", num_features=8)
    with pytest.raises(ValueError, match=r"HashingTF: column 'w' has a null list at row 1"):
        tf.transform(tokens_table([["a"], None]))
    with pytest.raises(TypeError, match=r"HashingTF: column 'w' \(parameter 'input_col'\) has type string"):
        tf.transform({"w": ["a"]})
    out = tf.transform(tokens_table([["a"]]))
    assert out.schema.field("v").metadata == {b"flowlearn.size": b"8"}
    assert tf.output_schema(tokens_table([]).schema) == out.schema


# ------------------------------------------------------------------------------- CountVectorizer


FLINK_CV_INPUT = [["a", "c", "b", "c"], ["c", "d", "e"], ["a", "b", "c"], ["e", "f"], ["a", "c", "a"]]


def test_count_vectorizer_flink_published_vectors():
    t = tokens_table(FLINK_CV_INPUT)
    out = CountVectorizer(input_col="w", output_col="v").fit(t).transform(t).column("v").to_pylist()
    expected = [([0, 1, 2], [2.0, 1.0, 1.0]), ([0, 3, 4], [1.0] * 3), ([0, 1, 2], [1.0] * 3), ([3, 5], [1.0, 1.0]),
                ([0, 1], [1.0, 2.0])]
    assert out == [{"size": 6, "indices": i, "values": v} for i, v in expected]


def _oracle_vocabulary(lists, min_df, max_df, size):
    """Document and term frequencies from scikit-learn, ordered as Flink ML orders the vocabulary (document
    frequency, highest first; ties by total count, then by term)."""
    cv = sklearn_text.CountVectorizer(analyzer=lambda x: x, min_df=min_df, max_df=max_df)
    x = cv.fit_transform(lists)
    terms = cv.get_feature_names_out()
    df = np.asarray((x > 0).sum(axis=0)).ravel()
    tf = np.asarray(x.sum(axis=0)).ravel()
    order = sorted(range(len(terms)), key=lambda j: (-df[j], -tf[j], terms[j]))
    return [str(terms[j]) for j in order][:size]


@pytest.mark.parametrize("min_df, max_df, sk_min, sk_max, size", [
    (1.0, 2.0**63, 1, 1.0, 1 << 18),
    (3.0, 2.0**63, 3, 1.0, 1 << 18),
    (0.01, 0.5, 0.01, 0.5, 1 << 18),
    (2.0, 40.0, 2, 40, 50),
])
def test_count_vectorizer_equals_sklearn_on_real_text(docs, min_df, max_df, sk_min, sk_max, size):
    lists = [re.findall(r"\w+", d.lower()) for d in docs]
    t = tokens_table(lists)
    model = CountVectorizer(input_col="w", output_col="v", min_df=min_df, max_df=max_df,
                            vocabulary_size=size).fit(t)
    assert model.vocabulary == _oracle_vocabulary(lists, sk_min, sk_max, size)
    oracle = sklearn_text.CountVectorizer(analyzer=lambda x: x, vocabulary=model.vocabulary)
    expected = oracle.transform(lists)
    got = to_csr(model.transform(t).column("v"))
    assert (got != expected).nnz == 0 and got.shape == expected.shape
    binary = to_csr(model.set(binary=True).transform(t).column("v"))
    assert (binary != sklearn_text.CountVectorizer(analyzer=lambda x: x, vocabulary=model.vocabulary,
                                                   binary=True).transform(lists)).nnz == 0


@pytest.mark.parametrize("min_tf", [2.0, 0.05])
def test_count_vectorizer_min_tf_closed_form(docs, min_tf):
    lists = [re.findall(r"\w+", d.lower()) for d in docs]
    t = tokens_table(lists)
    model = CountVectorizer(input_col="w", output_col="v", min_tf=min_tf).fit(t)
    index = {w: i for i, w in enumerate(model.vocabulary)}
    got = model.transform(t).column("v").to_pylist()
    for ws, g in zip(lists, got):
        need = min_tf if min_tf >= 1 else min_tf * len(ws)
        c = {index[w]: float(n) for w, n in collections.Counter(ws).items() if n >= need}
        assert dict(zip(g["indices"], g["values"])) == c


def test_count_vectorizer_partials_merge_to_fit(docs):
    lists = [re.findall(r"\w+", d.lower()) for d in docs] + [[], [None, "x"]]
    t = tokens_table(lists)
    cv = CountVectorizer(input_col="w", output_col="v", min_df=2.0)
    parts = [cv.partial(t.slice(0, 7)), cv.partial(t.slice(7, 0)), cv.partial(t.slice(7))]
    assert cv.finish(cv.merge(parts)).vocabulary == cv.fit(t).vocabulary
    # a part of empty documents still counts its documents
    only_empty = cv.partial(tokens_table([[], []]))
    assert only_empty.num_rows == 1 and only_empty.column("df").to_pylist() == [2]


def test_count_vectorizer_bad_params_named():
    t = tokens_table(FLINK_CV_INPUT)
    with pytest.raises(ValueError, match=r"CountVectorizer: parameter 'max_df' = 1.0 must be >= parameter 'min_df' "
                                         r"= 2.0"):
        CountVectorizer(input_col="w", min_df=2.0, max_df=1.0).fit(t)
    with pytest.raises(ValueError, match=r"'max_df' \(0.5 documents of 5\) is below 'min_df' \(1.0 documents\)"):
        CountVectorizer(input_col="w", min_df=1.0, max_df=0.1).fit(t)
    with pytest.raises(ValueError, match=r"parameter 'vocabulary_size' = 0 violates gt\(0\)"):
        CountVectorizer(vocabulary_size=0)
    with pytest.raises(ValueError, match="fit needs at least one row"):
        CountVectorizer(input_col="w").fit(tokens_table([]))


def test_count_vectorizer_model_data_round_trip(tmp_path):
    t = tokens_table(FLINK_CV_INPUT)
    model = CountVectorizer(input_col="w", output_col="v").fit(t)
    model.save(str(tmp_path / "m"))
    loaded = CountVectorizerModel.load(str(tmp_path / "m"))
    assert loaded.vocabulary == model.vocabulary
    assert loaded.transform(t).equals(model.transform(t))
    with pytest.raises(ValueError, match="holds a term twice"):
        CountVectorizerModel().set_model_data({"vocabulary": [["a", "a"]]})


# ------------------------------------------------------------------------------------------- IDF


def test_idf_flink_published_vectors():
    t = pa.table({"v": pa.array([[0, 1, 0, 2], [0, 1, 2, 3], [0, 1, 0, 0]], pa.list_(pa.float64(), 4))})
    out = IDF(input_col="v", output_col="o").fit(t).transform(t).column("o").to_pylist()
    np.testing.assert_allclose(out, [[0, 0, 0, 0.5753641], [0, 0, 1.3862943, 0.8630462], [0, 0, 0, 0]], atol=1e-7)
    out = IDF(input_col="v", output_col="o", min_doc_freq=2).fit(t).transform(t).column("o").to_pylist()
    np.testing.assert_allclose(out, [[0, 0, 0, 0.5753641], [0, 0, 0, 0.8630462], [0, 0, 0, 0]], atol=1e-7)


@pytest.mark.parametrize("sparse", [True, False])
def test_idf_equals_sklearn_tfidf_on_real_text(docs, sparse):
    """scikit-learn's smooth idf is ln((1 + n) / (1 + df)) + 1; Flink ML's and Spark's drop the + 1."""
    lists = [re.findall(r"\w+", d.lower()) for d in docs]
    counts = sklearn_text.CountVectorizer(analyzer=lambda x: x).fit_transform(lists)
    col = from_csr(counts) if sparse else pa.array(counts.toarray().tolist(), pa.list_(pa.float64(), counts.shape[1]))
    t = pa.table({"tf": col})
    model = IDF(input_col="tf", output_col="w").fit(t)
    sk = sklearn_text.TfidfTransformer(smooth_idf=True, norm=None).fit(counts)
    idf = np.asarray(model.get_model_data()[0].column("idf")[0].as_py())
    np.testing.assert_allclose(idf, sk.idf_ - 1.0, rtol=1e-12, atol=1e-12)
    got = to_csr(model.transform(t).column("w"))
    expected = counts.multiply(sk.idf_ - 1.0)
    np.testing.assert_allclose(got.toarray(), expected.toarray(), rtol=1e-12, atol=1e-12)
    assert (model.transform(t).schema.field("w").type == t.schema.field("tf").type)


def test_idf_min_doc_freq_and_negative_counts_closed_form():
    x = np.array([[1.0, -2.0, 0.0], [3.0, 0.0, 0.0], [0.0, 4.0, 1.0], [2.0, 0.0, 0.0]])
    t = pa.table({"v": pa.array(x.tolist(), pa.list_(pa.float64(), 3))})
    model = IDF(input_col="v", output_col="o", min_doc_freq=2).fit(t)
    df = np.array([3, 1, 1])  # only positive entries count as the term being in the document
    expected = np.where(df >= 2, np.log(5 / (df + 1)), 0.0)
    data = model.get_model_data()[0]
    np.testing.assert_allclose(data.column("idf")[0].as_py(), expected, rtol=1e-15)
    assert data.column("doc_freq")[0].as_py() == [3, 0, 0] and data.column("num_docs")[0].as_py() == 4


def test_idf_partials_merge_and_errors():
    rng = np.random.default_rng(0)
    x = rng.poisson(0.7, size=(40, 6)).astype(float)
    t = pa.table({"v": pa.array(x.tolist(), pa.list_(pa.float64(), 6))})
    est = IDF(input_col="v", output_col="o")
    merged = est.finish(est.merge([est.partial(t.slice(0, 13)), est.partial(t.slice(13, 0)), est.partial(t.slice(13))]))
    assert merged.get_model_data()[0].equals(est.fit(t).get_model_data()[0])
    model = est.fit(t)
    with pytest.raises(ValueError, match=r"IDFModel: column 'v' holds vectors of size 2, the model expects size 6"):
        model.transform({"v": [[1.0, 2.0]]})
    with pytest.raises(ValueError, match=r"IDF: column 'v' has NaN or infinity at row 1"):
        est.fit({"v": [[1.0], [float("nan")]]})
    sparse_in = pa.table({"v": vectors_to_array([SparseVector(6, [1], [2.0])])})
    assert model.output_schema(sparse_in.schema) == model.transform(sparse_in).schema


def test_tfidf_pipeline_doc_example_values():
    """Tokenizer -> HashingTF -> IDF end to end against the oracles composed by hand."""
    sentences = ["Hi I heard about Spark", "I wish Java could use case classes", "Logistic regression models are neat"]
    t = Tokenizer(input_col="s", output_col="w").transform({"s": sentences})
    t = HashingTF(input_col="w", output_col="tf", num_features=20).transform(t)
    out = IDF(input_col="tf", output_col="tfidf").fit(t).transform(t)
    m = len(sentences)
    rows = [[_flink_index(murmurhash3_32(w.lower().encode("utf-16-le"), seed=0), 20) for w in s.split()]
            for s in sentences]
    df = collections.Counter(i for r in rows for i in set(r))
    for r, got in zip(rows, out.column("tfidf").to_pylist()):
        c = collections.Counter(r)
        exp = {i: n * np.log((m + 1) / (df[i] + 1)) for i, n in c.items()}
        assert got["indices"] == sorted(exp)
        np.testing.assert_allclose(got["values"], [exp[i] for i in sorted(exp)], rtol=1e-15)
    assert json.loads(json.dumps(out.column("tfidf").to_pylist()))  # plain values


# ----------------------------------------------------------------------------------- row kernels


def _rows_equal_batch(stage, t, out_col, plain=False):
    from flowlearn.testing.conformance import rows_of

    want = stage.transform(t).column(out_col).to_pylist()
    fn = stage.row_fn()
    rows = t.to_pylist() if plain else rows_of(t)  # plain: lists of numbers are terms here, not vectors
    for r in rows:
        fn(r)
    got = [r[out_col] for r in rows]
    for g, w in zip(got, want):
        if isinstance(g, SparseVector):
            assert g.size == w["size"] and g.indices.tolist() == w["indices"]
            np.testing.assert_allclose(g.values, w["values"], rtol=1e-15)
        elif isinstance(g, np.ndarray):
            np.testing.assert_allclose(g, w, rtol=1e-15)
        else:
            assert g == w


def test_text_row_kernels_equal_batch(docs):
    lists = [re.findall(r"\w+", d) for d in docs[:150]] + [[], [None, "The", "x"]]
    t = tokens_table(lists)
    lower = tokens_table([[w.lower() for w in ws if w is not None] for ws in lists])
    for s in (NGram(input_col="w", output_col="o", n=3), NGram(input_col="w", output_col="o", n=1),
              StopWordsRemover(input_cols=["w"], output_cols=["o"]),
              StopWordsRemover(input_cols=["w"], output_cols=["o"], case_sensitive=True),
              StopWordsRemover(input_cols=["w"], output_cols=["o"], locale="tr", stop_words=["kış", "is", "in"]),
              HashingTF(input_col="w", output_col="o", num_features=97),
              HashingTF(input_col="w", output_col="o", num_features=97, binary=True)):
        _rows_equal_batch(s, t, "o")
    for kw in ({}, {"min_tf": 2.0}, {"min_tf": 0.1, "binary": True}):
        model = CountVectorizer(input_col="w", output_col="o", min_df=2.0, **kw).fit(lower)
        _rows_equal_batch(model, lower, "o")
        tf = model.transform(lower).rename_columns(["w", "tf"])
        idf = IDF(input_col="tf", output_col="o").fit(tf)
        _rows_equal_batch(idf, tf, "o")
        dense = pa.table({"tf": pa.array(to_csr(tf.column("tf")).toarray().tolist(),
                                         pa.list_(pa.float64(), len(model.vocabulary)))})
        _rows_equal_batch(idf, dense, "o")


def test_hashing_tf_row_kernel_numbers_as_batch():
    for t in (pa.table({"w": pa.array([[1, -5, 2**40], []], pa.list_(pa.int64()))}),
              pa.table({"w": pa.array([[1.5, float("nan"), -0.0]], pa.list_(pa.float64()))}),
              pa.table({"w": pa.array([[True, False, None]], pa.list_(pa.bool_()))})):
        _rows_equal_batch(HashingTF(input_col="w", output_col="o", num_features=50), t, "o", plain=True)
    fn = HashingTF(input_col="w", output_col="o").row_fn()
    with pytest.raises(ValueError, match=r"HashingTF: column 'w' holds a null list in this row"):
        fn({"w": None})
    with pytest.raises(ValueError, match=r"HashingTF: input column 'w' \(parameter 'input_col'\) is missing"):
        fn({"x": ["a"]})


# --- Spark MLlib itself (pyspark on local[1]; skipped without pyspark or Java) ------------------


def test_text_stages_equal_spark_mllib(spark, docs):
    """Spark MLlib shares Flink ML's definitions of these stages (both run Java's regex and split)."""
    from pyspark.ml import feature as sf

    text = docs[:120] + ["", "  lead and trail  ", "Te,st. punct"]
    df = spark.createDataFrame([(s,) for s in text], ["s"])
    t = pa.table({"s": text})
    pairs = [
        (sf.Tokenizer(inputCol="s", outputCol="o"), Tokenizer(input_col="s", output_col="o")),
        (sf.RegexTokenizer(inputCol="s", outputCol="o"), RegexTokenizer(input_col="s", output_col="o")),
        (sf.RegexTokenizer(inputCol="s", outputCol="o", gaps=False, pattern=r"\w+|\p{Punct}", minTokenLength=2),
         RegexTokenizer(input_col="s", output_col="o", gaps=False, pattern=r"\w+|\p{Punct}", min_token_length=2)),
        (sf.RegexTokenizer(inputCol="s", outputCol="o", pattern=r"[\s,.;:()]+", toLowercase=False),
         RegexTokenizer(input_col="s", output_col="o", pattern=r"[\s,.;:()]+", to_lowercase=False)),
    ]
    for theirs, ours in pairs:
        expected = [r["o"] for r in theirs.transform(df).select("o").collect()]
        assert ours.transform(t).column("o").to_pylist() == expected, type(ours).__name__

    words = [re.findall(r"\w+", s) for s in text]
    wdf = spark.createDataFrame([(w,) for w in words], ["w"])
    wt = tokens_table(words)
    for theirs, ours in [
        (sf.StopWordsRemover(inputCol="w", outputCol="o", locale="en_US"),
         StopWordsRemover(input_cols=["w"], output_cols=["o"])),
        (sf.StopWordsRemover(inputCol="w", outputCol="o", caseSensitive=True, locale="en_US"),
         StopWordsRemover(input_cols=["w"], output_cols=["o"], case_sensitive=True)),
        (sf.NGram(inputCol="w", outputCol="o", n=3), NGram(input_col="w", output_col="o", n=3)),
    ]:
        expected = [r["o"] for r in theirs.transform(wdf).select("o").collect()]
        assert ours.transform(wt).column("o").to_pylist() == expected, type(ours).__name__
    assert load_default_stop_words() == sf.StopWordsRemover.loadDefaultStopWords("english")


def test_count_vectorizer_and_idf_equal_spark_mllib(spark, docs):
    """Spark orders its vocabulary by total count where Flink ML orders by document frequency: the
    vocabularies hold the same terms, and the counts agree term by term."""
    from pyspark.ml import feature as sf

    words = [re.findall(r"\w+", d.lower()) for d in docs[:150]]
    wdf = spark.createDataFrame([(w,) for w in words], ["w"])
    wt = tokens_table(words)
    sm = sf.CountVectorizer(inputCol="w", outputCol="tf", minDF=2.0, minTF=0.05).fit(wdf)
    ours = CountVectorizer(input_col="w", output_col="tf", min_df=2.0, min_tf=0.05).fit(wt)
    assert sorted(sm.vocabulary) == sorted(ours.vocabulary)
    theirs = np.array([r["tf"].toArray() for r in sm.transform(wdf).select("tf").collect()])
    order = [sm.vocabulary.index(w) for w in ours.vocabulary]
    ours_tf = ours.transform(wt)
    np.testing.assert_array_equal(to_csr(ours_tf.column("tf")).toarray(), theirs[:, order])

    tfdf = sm.transform(wdf)
    idf_theirs = sf.IDF(inputCol="tf", outputCol="o", minDocFreq=3).fit(tfdf)
    idf_ours = IDF(input_col="tf", output_col="o", min_doc_freq=3).fit(ours_tf)
    np.testing.assert_allclose(idf_ours.get_model_data()[0].column("idf")[0].as_py(),
                               idf_theirs.idf.toArray()[order], rtol=1e-14)


def test_hashing_tf_differs_from_spark_by_its_hash(spark):
    """Spark hashes a term's UTF-8 bytes with MurmurHash3 seed 42; Flink ML (and flowlearn) its UTF-16
    code units with seed 0. Spark's published indices follow from its rule, flowlearn's from Flink ML's."""
    from pyspark.ml import feature as sf

    terms = ["HashingTFTest", "Hashing", "Term", "Frequency", "Test"]
    df = spark.createDataFrame([(terms,)], ["w"])
    theirs = sf.HashingTF(inputCol="w", outputCol="o", numFeatures=262144).transform(df).collect()[0]["o"]
    assert sorted(theirs.indices.tolist()) == sorted(murmurhash3_32(w.encode("utf-8"), seed=42) % 262144
                                                     for w in terms)
    ours = HashingTF(input_col="w", output_col="o").transform(tokens_table([terms])).column("o").to_pylist()[0]
    assert ours["indices"] == [67564, 89917, 113827, 131486, 228971] != sorted(theirs.indices.tolist())


def test_tokenizer_row_kernels_equal_batch(docs):
    t = pa.table({"s": pa.array(docs[:100] + ["ΟΔΟΣ İstanbul \U0001F600 x", "", None], pa.string())})
    for s in (Tokenizer(input_col="s", output_col="o"), RegexTokenizer(input_col="s", output_col="o"),
              RegexTokenizer(input_col="s", output_col="o", gaps=False, pattern=r"\w+|\p{Punct}", min_token_length=2),
              RegexTokenizer(input_col="s", output_col="o", pattern=r"\b", to_lowercase=False, min_token_length=0)):
        _rows_equal_batch(s, t, "o")
    with pytest.raises(TypeError, match=r"Tokenizer: column 's' holds int, expected a string"):
        Tokenizer(input_col="s").row_fn()({"s": 3})
