"""FPGrowth / FPGrowthModel (Spark MLlib's frequent itemsets, association rules and predictions).

Oracles: Spark MLlib itself (``pyspark.ml.fpm.FPGrowth`` on ``local[1]``, skipped when pyspark or
Java is missing) on transactions made from the digits data set (the bright pixels of an image)
and on random baskets; the Spark documentation's 3-transaction example; and a brute-force count of
every candidate itemset (a closed form of the definition) on small random data.
"""
import itertools
import math

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_digits

import flowlearn as fl
from flowlearn.recommendation.fpgrowth import FPGrowth, FPGrowthModel


def _ints(rows):
    return pa.table({"items": pa.array(rows, pa.list_(pa.int64()))})


def _itemsets(model):
    d = model.freq_itemsets.to_pydict()
    return {frozenset(s): f for s, f in zip(d["items"], d["freq"])}


def _rules(model):
    d = model.association_rules.to_pydict()
    return {(frozenset(a), c[0]): (conf, lift, sup) for a, c, conf, lift, sup in
            zip(d["antecedent"], d["consequent"], d["confidence"], d["lift"], d["support"])}


def test_spark_docs_example():
    # Spark ML guide, "FP-Growth": minSupport=0.5, minConfidence=0.6
    model = FPGrowth(min_support=0.5, min_confidence=0.6).fit(_ints([[1, 2, 5], [1, 2, 3, 5], [1, 2]]))
    assert _itemsets(model) == {frozenset([1]): 3, frozenset([2]): 3, frozenset([1, 2]): 3, frozenset([5]): 2,
                                frozenset([2, 5]): 2, frozenset([1, 2, 5]): 2, frozenset([1, 5]): 2}
    two3, one = 2 / 3, 1.0
    assert _rules(model) == {
        (frozenset([5, 2]), 1): (one, one, two3), (frozenset([5, 1]), 2): (one, one, two3),
        (frozenset([2, 1]), 5): (two3, one, two3), (frozenset([5]), 2): (one, one, two3),
        (frozenset([5]), 1): (one, one, two3), (frozenset([1]), 2): (one, one, one),
        (frozenset([1]), 5): (two3, one, two3), (frozenset([2]), 1): (one, one, one),
        (frozenset([2]), 5): (two3, one, two3)}
    assert model.transform(_ints([[1, 2, 5], [1, 2, 3, 5], [1, 2]])).column("prediction").to_pylist() == \
        [[], [], [5]]


@pytest.mark.parametrize("seed,min_support", [(0, 0.2), (1, 0.1), (2, 0.35)])
def test_brute_force_counts(seed, min_support):
    rng = np.random.default_rng(seed)
    rows = [sorted(set(rng.choice(8, rng.integers(0, 6), replace=False).tolist())) for _ in range(40)]
    model = FPGrowth(min_support=min_support, min_confidence=0.0).fit(_ints(rows))
    need = math.ceil(min_support * len(rows))
    want = {}
    for size in range(1, 9):
        for cand in itertools.combinations(range(8), size):
            f = sum(set(cand) <= set(r) for r in rows)
            if f >= need and f > 0:
                want[frozenset(cand)] = f
    assert _itemsets(model) == want
    rules = _rules(model)
    assert len(rules) == sum(len(s) for s in want if len(s) > 1)
    for (ante, c), (conf, lift, sup) in rules.items():
        full = ante | {c}
        assert conf == want[full] / want[ante]
        assert lift == conf / (want[frozenset([c])] / len(rows))
        assert sup == want[full] / len(rows)


def test_predictions_by_definition_and_strings():
    rows = [["a", "b"], ["a", "b", "c"], ["a", "c"], ["b", "c"], ["a", "b", "c", "d"], ["d"]]
    model = FPGrowth(min_support=0.3, min_confidence=0.5).fit({"items": rows})
    rules = _rules(model)
    queries = [["a"], ["b", "c"], ["a", "z"], [], ["d", "a"]]
    got = model.transform({"items": queries, "id": list(range(5))}).column("prediction").to_pylist()
    for q, p in zip(queries, got):
        want = {c for (ante, c) in rules if ante <= set(q) and c not in q}
        assert sorted(p) == sorted(want) and len(p) == len(set(p))


def test_nulls_duplicates_and_types():
    with pytest.raises(ValueError, match="FPGrowth: column 'items' row 1 holds the item 2 more than once"):
        FPGrowth().fit(_ints([[1], [2, 2]]))
    with pytest.raises(ValueError, match="null item at row 1"):
        FPGrowth().fit(_ints([[1], [2, None]]))
    with pytest.raises(TypeError, match="FPGrowth: column 'items'.*arrays of items"):
        FPGrowth().fit({"items": [1.0, 2.0]})
    with pytest.raises(ValueError, match="FPGrowth: parameter 'min_support'"):
        FPGrowth(min_support=1.5)
    # null transactions are not transactions (Spark): support counts the 2 others; predict []
    t = pa.table({"items": pa.array([[1, 2], None, [1]], pa.list_(pa.int64()))})
    model = FPGrowth(min_support=1.0, min_confidence=0.5).fit(t)
    assert _itemsets(model) == {frozenset([1]): 2}
    assert model.transform(t).column("prediction").to_pylist() == [[], [], []]
    with pytest.raises(ValueError, match="at least one transaction"):
        FPGrowth().fit(pa.table({"items": pa.array([None], pa.list_(pa.int64()))}))
    with pytest.raises(TypeError, match="FPGrowthModel: column 'items' holds items of type string"):
        model.transform({"items": [["x"]]})
    schema = model.output_schema(pa.schema([("items", pa.list_(pa.int32()))]))
    assert schema.field("prediction").type == pa.list_(pa.int32())


def test_save_load_and_min_confidence_on_model(tmp_path):
    model = FPGrowth(min_support=0.5, min_confidence=0.9).fit(_ints([[1, 2, 5], [1, 2, 3, 5], [1, 2]]))
    model.save(str(tmp_path / "m"))
    loaded = fl.load(str(tmp_path / "m"))
    assert _rules(loaded) == _rules(model) and len(_rules(model)) == 6
    loaded.set(min_confidence=0.6)                     # rules follow the model's min_confidence (Spark)
    assert len(_rules(loaded)) == 9


# --- Spark MLlib itself ------------------------------------------------------------------------


def _spark_fit(spark, rows, min_support, min_confidence, queries):
    session = spark
    from pyspark.ml.fpm import FPGrowth as SparkFPGrowth

    df = session.createDataFrame([(r,) for r in rows], ["items"])
    m = SparkFPGrowth(itemsCol="items", minSupport=min_support, minConfidence=min_confidence).fit(df)
    sets = {frozenset(r["items"]): r["freq"] for r in m.freqItemsets.collect()}
    rules = {(frozenset(r["antecedent"]), r["consequent"][0]): (r["confidence"], r["lift"], r["support"])
             for r in m.associationRules.collect()}
    pred = [sorted(r["prediction"]) for r in m.transform(session.createDataFrame([(q,) for q in queries],
                                                                                 ["items"])).collect()]
    return sets, rules, pred


def _digit_baskets(n):
    x, _ = load_digits(return_X_y=True)
    return [[f"p{j}" for j in np.flatnonzero(img >= 13)] for img in x[:n]]


@pytest.mark.parametrize("data,min_support,min_confidence", [
    ("digits", 0.3, 0.7), ("digits", 0.45, 0.9), ("baskets", 0.05, 0.3)])
def test_matches_spark(spark, data, min_support, min_confidence):
    if data == "digits":
        rows = _digit_baskets(300)
    else:
        rng = np.random.default_rng(7)
        rows = [sorted({f"i{int(v)}" for v in rng.zipf(1.8, rng.integers(1, 8)) if v < 40}) for _ in range(400)]
    queries = rows[:60] + [["p20", "p28"], ["i1", "i2"], []]
    sets, rules, pred = _spark_fit(spark, rows, min_support, min_confidence, queries)
    model = FPGrowth(min_support=min_support, min_confidence=min_confidence).fit({"items": rows})
    assert len(sets) >= 10
    assert _itemsets(model) == sets
    ours = _rules(model)
    assert ours.keys() == rules.keys()
    for key, (conf, lift, sup) in rules.items():
        assert ours[key] == pytest.approx((conf, lift, sup), rel=1e-15)
    q = pa.table({"items": pa.array(queries, pa.list_(pa.string()))})
    assert [sorted(p) for p in model.transform(q).column("prediction").to_pylist()] == pred


def test_doctests():
    import doctest

    import flowlearn.recommendation.fpgrowth as module

    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
