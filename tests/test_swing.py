"""Swing (Flink ML's item-item similarity).

No library implements Swing, so the oracles are Flink ML's published ``SwingTest`` output (exact
strings), a direct transcription of the Swing formula (a loop over items and pairs of users, written
here independently of the sparse-matrix kernel) on random data, and Java's documented
``Double.toString`` notation.
"""
import itertools

import numpy as np
import pyarrow as pa
import pytest

import flowlearn as fl
import flowlearn.stream as fls
from flowlearn.recommendation.swing import Swing, java_double_strings

# Flink ML SwingTest: input rows and compareResultAndExpected's rows (minUserBehavior=2, maxUserBehavior=3)
FLINK_INPUT = {"user": [0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4, 4, 4],
               "item": [10, 11, 12, 13, 12, 10, 11, 12, 13, 12, 12, 10, 11, 12, 13]}
FLINK_EXPECTED = {"item": [10, 11, 12, 13],
                  "output": ["11,0.058845768947156235;12,0.058845768947156235",
                             "10,0.058845768947156235;12,0.058845768947156235",
                             "13,0.09134833828228624;10,0.058845768947156235;11,0.058845768947156235",
                             "12,0.09134833828228624"]}


def brute_swing(users, items, alpha1, alpha2, beta, min_b, max_b, samples=None):
    """w(i, j) by the formula: pairs {u, v} of (sampled) users of i, summed over j in I_u & I_v, j != i."""
    bought = {}
    for u, i in zip(users, items):
        bought.setdefault(u, set()).add(i)
    bought = {u: s for u, s in bought.items() if min_b <= len(s) <= max_b}
    buyers = {}
    for u, s in bought.items():
        for i in s:
            buyers.setdefault(i, set()).add(u)
    scores = {}
    for i, us in buyers.items():
        us = sorted(samples.get(i, us) if samples else us)
        for u, v in itertools.combinations(us, 2):
            common = bought[u] & bought[v]
            w = (alpha1 + len(bought[u])) ** -beta * (alpha1 + len(bought[v])) ** -beta / (alpha2 + len(common))
            for j in common - {i}:
                scores.setdefault(i, {}).setdefault(j, 0.0)
                scores[i][j] += w
    return scores, buyers


def parse(out):
    res = {}
    for item, s in zip(out.column(0).to_pylist(), out.column(1).to_pylist()):
        res[item] = [(int(e.split(",")[0]), float(e.split(",")[1])) for e in s.split(";")]
    return res


def test_flink_ml_published_output():
    out = Swing(min_user_behavior=2, max_user_behavior=3).transform(FLINK_INPUT)
    assert out.to_pydict() == FLINK_EXPECTED
    assert Swing(output_col="item_score", min_user_behavior=1).transform(FLINK_INPUT).column_names == \
        ["item", "item_score"]


def test_hand_computed_closed_form():
    # users 1 {7, 8}, 2 {7, 8}, 3 {7, 9}; alpha1=0, beta=1, alpha2=1: the pair (1, 2) shares {7, 8}:
    # w = 1/2 * 1/2 / (1 + 2) = 1/12 for (7, 8) and (8, 7); the pairs with user 3 share only item 7.
    t = {"user": [1, 1, 2, 2, 3, 3], "item": [7, 8, 7, 8, 7, 9]}
    out = parse(Swing(min_user_behavior=1, alpha1=0, alpha2=1, beta=1.0).transform(t))
    assert out.keys() == {7, 8}
    assert out[7][0][0] == 8 and out[7][0][1] == pytest.approx(1 / 12, rel=1e-15)
    assert out[8][0][0] == 7 and out[8][0][1] == pytest.approx(1 / 12, rel=1e-15)


@pytest.mark.parametrize("seed,alpha1,alpha2,beta,k", [(0, 15, 0, 0.3, 100), (1, 0, 2, 1.0, 3), (2, 5, 1, 0.5, 1)])
def test_random_data_equals_formula(seed, alpha1, alpha2, beta, k):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 40, 600)
    items = rng.zipf(1.6, 600) % 50 + 1000
    out = Swing(min_user_behavior=3, max_user_behavior=25, alpha1=alpha1, alpha2=alpha2, beta=beta, k=k)\
        .transform({"user": users, "item": items})
    want, _ = brute_swing(users.tolist(), items.tolist(), alpha1, alpha2, beta, 3, 25)
    got = parse(out)
    assert sorted(got) == sorted(i for i in want if want[i])
    assert out.column("item").to_pylist() == sorted(got)
    for i, ranked in got.items():
        expect = sorted(want[i].items(), key=lambda e: (-e[1], e[0]))
        assert len(ranked) == min(k, len(expect))
        for (j, s), (wj, ws) in zip(ranked, expect):
            assert s == pytest.approx(ws, rel=1e-12)
        # order: scores non-increasing, equal scores by ascending id
        assert all(a[1] > b[1] or (a[1] == b[1] and a[0] < b[0]) for a, b in zip(ranked, ranked[1:]))
        assert {j for j, _ in ranked} <= set(want[i])


def test_sampling_is_a_subset_of_users_and_seeded():
    rng = np.random.default_rng(5)
    users = rng.integers(0, 8, 60)
    items = rng.integers(0, 5, 60)
    m = 3
    out = parse(Swing(min_user_behavior=1, max_user_num_per_item=m, seed=11).transform({"user": users, "item": items}))
    _, buyers = brute_swing(users.tolist(), items.tolist(), 15, 0, 0.3, 1, 1000)
    assert max(len(b) for b in buyers.values()) > m
    for i, ranked in out.items():
        # some m-subset of item i's users gives exactly these scores
        matches = []
        for subset in itertools.combinations(sorted(buyers[i]), min(m, len(buyers[i]))):
            want, _ = brute_swing(users.tolist(), items.tolist(), 15, 0, 0.3, 1, 1000, samples={i: subset})
            w = want.get(i, {})
            if sorted(w) == sorted(j for j, _ in ranked) and all(s == pytest.approx(w[j], rel=1e-12) for j, s in ranked):
                matches.append(subset)
        assert matches, i
    again = Swing(min_user_behavior=1, max_user_num_per_item=m, seed=11).transform({"user": users, "item": items})
    assert parse(again) == out
    seeds = {str(parse(Swing(min_user_behavior=1, max_user_num_per_item=m, seed=s).transform(
        {"user": users, "item": items}))) for s in range(6)}
    assert len(seeds) > 1


def test_java_double_to_string():
    # Double.toString: decimal for 1e-3 <= |x| < 1e7 (at least one fractional digit), else d.dddE<n>
    values = np.array([1.0, 100.0, 0.001, 1e-4, 1234567.0, 1e7, 12345678.9, 0.058845768947156235, 2.5e-10, -3.0])
    assert java_double_strings(values).to_pylist() == [
        "1.0", "100.0", "0.001", "1.0E-4", "1234567.0", "1.0E7", "1.23456789E7", "0.058845768947156235",
        "2.5E-10", "-3.0"]


def test_stream_equals_table_and_duplicates_count_once():
    t = fl.table(FLINK_INPUT)
    stage = Swing(min_user_behavior=2, max_user_behavior=3)
    assert stage.transform(fls.from_table(t, batch_size=4)).to_table().to_pydict() == FLINK_EXPECTED
    doubled = pa.concat_tables([t, t])
    assert stage.transform(doubled).to_pydict() == FLINK_EXPECTED


def test_bad_input_named():
    with pytest.raises(TypeError, match="Swing: column 'item'.*integers"):
        Swing(min_user_behavior=1).transform({"user": [0, 1], "item": ["10", "11"]})
    with pytest.raises(ValueError, match="Swing: column 'user'.*null at row 1"):
        Swing(min_user_behavior=1).transform(pa.table({"user": pa.array([0, None], pa.int64()), "item": [1, 2]}))
    with pytest.raises(ValueError, match="max_user_behavior=2 must be greater than or equal to min_user_behavior=3"):
        Swing(min_user_behavior=3, max_user_behavior=2).transform(FLINK_INPUT)
    with pytest.raises(ValueError, match="Swing: parameter 'k'"):
        Swing(k=0)
    with pytest.raises(ValueError, match="'user'.*missing"):
        Swing().transform({"u": [1], "item": [2]})
    with pytest.raises(ValueError, match="Swing: input column 'item'"):
        Swing().output_schema(pa.schema([("user", pa.int64())]))
    assert Swing().output_schema(pa.schema([("user", pa.int32()), ("item", pa.int64())])) == pa.schema(
        [("item", pa.int64()), ("output", pa.string())])


def test_doctests():
    import doctest

    import flowlearn.recommendation.swing as module

    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
