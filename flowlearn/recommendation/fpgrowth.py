"""Frequent itemsets and association rules as Spark MLlib's ``FPGrowth`` / ``FPGrowthModel``.

Fitting finds every itemset contained in at least ``ceil(min_support * n)`` of the ``n``
transactions (rows of ``items_col``, arrays of distinct items); the model derives the association
rules ``antecedent => consequent`` (one-item consequents) with confidence at least
``min_confidence`` and predicts, for each row, the consequents of the rules whose antecedent the
row contains, minus the row's own items (Spark's ``transform``).

Example:
    >>> import pyarrow as pa, flowlearn as fl
    >>> t = pa.table({"items": pa.array([[1, 2, 5], [1, 2, 3, 5], [1, 2]], pa.list_(pa.int64()))})
    >>> model = fl.recommendation.FPGrowth(min_support=0.5, min_confidence=0.6).fit(t)
    >>> model.freq_itemsets.num_rows
    7
    >>> model.transform(t).column("prediction").to_pylist()
    [[], [], [5]]
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flowlearn.api import Estimator, Model, SchemaError, _as_schema
from flowlearn.data.columns import first_bad_row, require_column, with_column
from flowlearn.params import HasPredictionCol, Param, gt, in_range

__all__ = ["FPGrowth", "FPGrowthModel"]


class _FPGrowthModelParams(HasPredictionCol):
    items_col = Param(str, default="items", doc="Column of transactions: arrays of distinct items.")
    min_confidence = Param(float, default=0.8, validator=in_range(0, 1),
                           doc="Minimal confidence of the association rules (used by the model, not the fit).")
    min_support = Param(float, default=0.3, validator=in_range(0, 1),
                        doc="Minimal support of a frequent itemset: the fraction of transactions holding it.")


class _FPGrowthParams(_FPGrowthModelParams):
    num_partitions = Param(int, default=None, validator=gt(0),
                           doc="Spark's number of partitions of the parallel FP-growth; the results do not "
                               "depend on it, and an in-process fit has a single partition.")


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits of each row of a uint64 array, summed over the row."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words).sum(axis=-1, dtype=np.int64)
    return _POP8[words.view(np.uint8)].sum(axis=-1, dtype=np.int64)


_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _one_array(col: pa.ChunkedArray) -> pa.Array:
    return col.chunk(0) if col.num_chunks == 1 else pa.concat_arrays(col.chunks) if col.num_chunks else \
        pa.array([], col.type)


def _items(arr: pa.Array, col_name: str, stage: str) -> pa.Array:
    """The items of every transaction, one after the other; a null item is refused naming its row."""
    values = arr.flatten()
    if values.null_count:
        rows = pc.list_parent_indices(arr).to_numpy()
        row = int(rows[first_bad_row(~np.asarray(pc.is_valid(values).to_numpy(zero_copy_only=False)))])
        raise ValueError(f"{stage}: column '{col_name}' has a null item at row {row}; items must not be null")
    return values


def _transactions(t: pa.Table, col_name: str, stage: str) -> tuple[pa.ChunkedArray, pa.Array, np.ndarray, np.ndarray]:
    """The items column, its sorted vocabulary, and per item occurrence its row and item code
    (rows whose array is null hold no occurrence)."""
    col = require_column(t, col_name, stage, "items_col")
    if not _is_list(col.type):
        raise TypeError(f"{stage}: column '{col_name}' (parameter 'items_col') has type {col.type}; expected "
                        f"arrays of items (list<...>), one transaction per row")
    arr = _one_array(col)
    values = _items(arr, col_name, stage)
    rows = pc.list_parent_indices(arr).to_numpy().astype(np.int64)
    vocab = pc.unique(values)
    vocab = vocab.take(pc.array_sort_indices(vocab))
    codes = pc.index_in(values, value_set=vocab).to_numpy().astype(np.int64) if len(values) else \
        np.zeros(0, np.int64)
    return arr, vocab, rows, codes


def _check_unique(arr: pa.Array, rows: np.ndarray, codes: np.ndarray, n_items: int, stage: str, col: str) -> None:
    key = rows * max(n_items, 1) + codes
    if len(np.unique(key)) != len(key):
        s = np.sort(key)
        dup = s[np.flatnonzero(s[1:] == s[:-1])[0]]
        row = int(dup // max(n_items, 1))
        raise ValueError(f"{stage}: column '{col}' row {row} holds the item {_dup_item(arr, row)!r} more than once; "
                         f"items in a transaction must be unique (as Spark requires)")


def _dup_item(arr: pa.Array, row: int) -> Any:
    seen = set()
    for v in arr[row].as_py():
        if v in seen:
            return v
        seen.add(v)
    return None


def _mine(rows: np.ndarray, codes: np.ndarray, n: int, n_items: int, min_count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """All itemsets held by at least ``min_count`` of ``n`` transactions, by size: a list of
    (itemsets as a count x size array of item codes, each row ascending; their counts).

    Depth-first over prefixes (Eclat): a prefix's transactions are a bitset of n bits; the
    extensions of a prefix by the later frequent items are counted at once, as one AND and one
    popcount over (extensions x words)."""
    freq1 = np.bincount(codes, minlength=n_items)
    frequent = np.flatnonzero(freq1 >= max(min_count, 1))
    by_size: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    if len(frequent) == 0:
        return []
    words = (n + 63) // 64
    keep = np.isin(codes, frequent)
    pos = np.searchsorted(frequent, codes[keep])
    tr = rows[keep]
    bits = np.zeros((len(frequent), words), dtype=np.uint64)
    np.bitwise_or.at(bits, (pos, tr >> 6), np.left_shift(np.uint64(1), (tr & 63).astype(np.uint64)))
    by_size[1] = ([frequent[:, None]], [freq1[frequent]])
    # stack of (prefix codes, its bitset, candidate positions in `frequent`, the candidates' bitsets
    # before the AND with the prefix: a view of the parent's array, so a node costs no copy until popped)
    stack = [(frequent[i:i + 1], bits[i], np.arange(i + 1, len(frequent)), bits[i + 1:])
             for i in range(len(frequent) - 2, -1, -1)]
    while stack:
        prefix, pbits, cand, cbits = stack.pop()
        cbits = cbits & pbits
        counts = _popcount(cbits)
        ok = counts >= min_count
        if not ok.any():
            continue
        cand, cbits, counts = cand[ok], cbits[ok], counts[ok]
        size = len(prefix) + 1
        sets = np.empty((len(cand), size), dtype=np.int64)
        sets[:, :-1] = prefix
        sets[:, -1] = frequent[cand]
        lists = by_size.setdefault(size, ([], []))
        lists[0].append(sets)
        lists[1].append(counts)
        for j in range(len(cand) - 2, -1, -1):
            stack.append((sets[j], cbits[j], cand[j + 1:], cbits[j + 1:]))
    return [(np.concatenate(by_size[s][0]), np.concatenate(by_size[s][1]).astype(np.int64))
            for s in sorted(by_size)]


def _rows_key(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.int64)
    return a.view(np.dtype((np.void, 8 * a.shape[1]))).reshape(-1)


def _matrix_lists(mats: list[np.ndarray], vocab: pa.Array) -> pa.Array:
    """Itemsets given as matrices of codes (one row per itemset, one matrix per size, in order) as a
    list column of the vocabulary's type."""
    lengths = np.concatenate([np.full(len(m), m.shape[1], np.int64) for m in mats]) if mats else \
        np.zeros(0, np.int64)
    flat = np.concatenate([m.reshape(-1) for m in mats]) if mats else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), vocab.take(pa.array(flat, pa.int64())))


# Bound on the elements of one block's (rows x rules) matrix of fired rules.
_FIRE_BLOCK = 1 << 23


def _fire_rules(rows: np.ndarray, codes: np.ndarray, n_rows: int, n_vocab: int, ante: list[np.ndarray],
                cons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The predictions of the rules (``ante``: matrices of antecedent codes, one per chunk of rules
    in rule order; ``cons``: consequent codes) for the rows holding the items ``codes`` at ``rows``:
    parallel arrays (row, item), by row, items in the order of the first rule predicting them, no
    item the row holds and none twice. Rows go in blocks: a dense boolean row x item matrix over
    the items the rules mention, and per chunk of rules the AND of its antecedent columns."""
    used = np.unique(np.concatenate([cons] + [m.reshape(-1) for m in ante]))
    col = np.full(n_vocab, -1, dtype=np.int64)
    col[used] = np.arange(len(used))
    held_col = col[codes]
    keep = held_col >= 0
    rows, held_col = rows[keep], held_col[keep]
    starts = np.searchsorted(rows, np.arange(0, n_rows + 1)) if len(rows) else np.zeros(n_rows + 1, np.int64)
    ante_cols = [col[m] for m in ante]
    cons_col = col[cons]
    block = max(1, _FIRE_BLOCK // max(len(cons), len(used)))
    out_r, out_i = [], []
    for lo in range(0, n_rows, block):
        hi = min(lo + block, n_rows)
        held = np.zeros((hi - lo, len(used)), dtype=bool)
        a, b = starts[lo], starts[hi]
        held[rows[a:b] - lo, held_col[a:b]] = True
        fired = np.empty((hi - lo, len(cons)), dtype=bool)
        offset = 0
        for m in ante_cols:                                            # rules whose antecedent the row holds
            f = fired[:, offset:offset + len(m)]
            np.copyto(f, held[:, m[:, 0]])
            for c in range(1, m.shape[1]):
                f &= held[:, m[:, c]]
            offset += len(m)
        fired &= ~held[:, cons_col]                                     # not an item the row holds
        r, rule = np.nonzero(fired)                                     # by row, then rule order
        item = cons[rule]
        key = r * n_vocab + item
        _, first = np.unique(key, return_index=True)                    # first rule giving each item
        first.sort()
        out_r.append(r[first] + lo)
        out_i.append(item[first])
    return np.concatenate(out_r), np.concatenate(out_i)


class FPGrowth(_FPGrowthParams, Estimator):
    """Frequent itemsets and association rules (Spark MLlib ``FPGrowth``).

    Input: ``items_col`` holds one transaction per row, an array of distinct items (strings or
    numbers); rows whose array is null are not transactions (as Spark). An itemset is frequent when
    at least ``ceil(min_support * n)`` of the ``n`` transactions hold it. The fitted model exposes
    ``freq_itemsets`` (``items``, ``freq``) and ``association_rules`` (``antecedent``,
    ``consequent``, ``confidence``, ``lift``, ``support``), Spark's tables, and its ``transform``
    appends ``prediction_col``: the items the rules predict for each row.

    The mining is exact (every frequent itemset with its count, as Spark's FP-growth finds them),
    done depth-first over vertical bitsets of the transactions (Eclat), which vectorizes the
    counting of all extensions of an itemset into one AND and popcount. Items inside an itemset,
    antecedent and prediction are listed in ascending order; Spark lists them in its FP-tree's
    order, so compare them as sets.

    Example:
        >>> import flowlearn as fl
        >>> t = fl.table({"items": [["a", "b"], ["a", "b", "c"], ["a"]]})
        >>> m = fl.recommendation.FPGrowth(min_support=0.6, min_confidence=0.9).fit(t)
        >>> m.freq_itemsets.to_pydict()
        {'items': [['a'], ['b'], ['a', 'b']], 'freq': [3, 2, 2]}
        >>> m.association_rules.select(["antecedent", "consequent", "confidence"]).to_pydict()
        {'antecedent': [['b']], 'consequent': [['a']], 'confidence': [1.0]}
    """

    def _fit(self, *tables: pa.Table) -> "FPGrowthModel":
        stage = type(self).__name__
        if len(tables) != 1:
            raise TypeError(f"{stage}.fit takes one input table, got {len(tables)}")
        (t,) = tables
        arr, vocab, rows, codes = _transactions(t, self.items_col, stage)
        _check_unique(arr, rows, codes, len(vocab), stage, self.items_col)
        n = len(arr) - arr.null_count
        if n == 0:
            raise ValueError(f"{stage}: fit needs at least one transaction; column '{self.items_col}' has no "
                             f"non-null rows")
        # null rows are no transactions: renumber the others 0..n-1
        valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False))
        rows = (np.cumsum(valid) - 1)[rows]
        min_count = math.ceil(self.min_support * n)
        levels = _mine(rows, codes, n, len(vocab), min_count)
        freq = np.concatenate([f for _, f in levels]) if levels else np.zeros(0, np.int64)
        itemsets = pa.table({"items": _matrix_lists([m for m, _ in levels], vocab),
                             "freq": pa.array(freq, pa.int64())})
        model = FPGrowthModel()
        self.copy_params_to(model)
        return model.set_model_data(itemsets, pa.table({"num_training_records": pa.array([n], pa.int64())}))


class FPGrowthModel(_FPGrowthModelParams, Model):
    """A fitted :class:`FPGrowth` (Spark MLlib ``FPGrowthModel``).

    * ``freq_itemsets``: ``items`` (array), ``freq`` (int64), by itemset size;
    * ``association_rules``: for every frequent itemset ``S`` of two items or more and every item
      ``c`` in it, the rule ``S - {c} => {c}`` when ``confidence = freq(S) / freq(S - {c})`` is at
      least ``min_confidence``; ``lift = confidence / (freq({c}) / n)``, ``support = freq(S) / n``;
    * ``transform`` appends ``prediction_col`` (an array of the items' type): the distinct
      consequents of the rules whose antecedent the row holds, without the row's own items, in the
      order of the rules table. A null row predicts an empty array (Spark).

    Model data: the ``freq_itemsets`` table and a one-row table ``num_training_records`` (int64).

    Example:
        >>> import flowlearn as fl
        >>> m = fl.recommendation.FPGrowthModel(min_confidence=0.5).set_model_data(
        ...     {"items": [["x"], ["y"], ["x", "y"]], "freq": [4, 2, 2]}, {"num_training_records": [4]})
        >>> m.transform({"items": [["x"], ["y"], ["z"]]}).column("prediction").to_pylist()
        [['y'], ['x'], []]
    """

    def _load_model_data(self, tables: list[pa.Table]) -> None:
        stage = type(self).__name__
        if len(tables) != 2:
            raise ValueError(f"{stage}: model data is two tables (freq_itemsets, num_training_records), got "
                             f"{len(tables)}")
        sets, meta = tables
        for name, t, cols in (("freq_itemsets", sets, ("items", "freq")), ("num_training_records", meta,
                                                                             ("num_training_records",))):
            for c in cols:
                require_column(t, c, f"{stage} model data ({name})")
        if meta.num_rows != 1:
            raise ValueError(f"{stage}: model data table num_training_records must have one row, got {meta.num_rows}")
        self._n = int(meta.column("num_training_records")[0].as_py())
        _, vocab, rows, codes = _transactions(sets, "items", f"{stage} model data")
        self._vocab = vocab
        freq = sets.column("freq").to_numpy().astype(np.int64)
        lengths = np.bincount(rows, minlength=sets.num_rows) if len(rows) else np.zeros(sets.num_rows, np.int64)
        if (lengths == 0).any():
            raise ValueError(f"{stage}: model data has an empty itemset at row {first_bad_row(lengths == 0)}")
        order = np.lexsort((codes, rows))
        codes = codes[order]                                            # each itemset's codes, ascending
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        # itemsets by size: (their rows in the model data, size-column matrix of codes)
        self._by_size = {}
        for size in np.unique(lengths).tolist():
            idx = np.flatnonzero(lengths == size)
            self._by_size[size] = (idx, codes[starts[idx][:, None] + np.arange(size)[None, :]])
        self._freq = freq
        self._rules_cache = None

    def _rules(self) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The rules at ``min_confidence``: antecedents (one matrix of codes per antecedent size),
        consequent codes, confidence, lift, support (all in rule order)."""
        if self._rules_cache is not None and self._rules_cache[0] == self.min_confidence:
            return self._rules_cache[1]
        item_support = np.zeros(len(self._vocab))
        if 1 in self._by_size:
            idx1, m1 = self._by_size[1]
            item_support[m1[:, 0]] = self._freq[idx1] / self._n
        antecedents, cons, conf, lift, support = [], [], [], [], []
        for size in sorted(self._by_size):
            if size < 2:
                continue
            if size - 1 not in self._by_size:
                raise ValueError(f"{type(self).__name__}: model data has itemsets of {size} items but none of "
                                 f"{size - 1}; it was not made by FPGrowth")
            idx, sets = self._by_size[size]
            prev_idx, prev = self._by_size[size - 1]
            prev_keys = _rows_key(prev)
            order = np.argsort(prev_keys)
            sorted_keys = prev_keys[order]
            f_union = self._freq[idx]
            for p in range(size):
                ante = np.delete(sets, p, axis=1)
                keys = _rows_key(ante)
                at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
                if not (sorted_keys[at] == keys).all():
                    raise ValueError(f"{type(self).__name__}: model data is not closed under subsets (an itemset's "
                                     f"subset is missing); it was not made by FPGrowth")
                c = f_union.astype(np.float64) / self._freq[prev_idx[order[at]]]
                ok = c >= self.min_confidence
                antecedents.append(ante[ok])
                cons.append(sets[ok, p])
                conf.append(c[ok])
                lift.append(c[ok] / item_support[sets[ok, p]])
                support.append(f_union[ok].astype(np.float64) / self._n)
        cat = (lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt))
        out = (antecedents, cat(cons, np.int64), cat(conf, np.float64), cat(lift, np.float64),
               cat(support, np.float64))
        self._rules_cache = (self.min_confidence, out)
        return out

    @property
    def freq_itemsets(self) -> pa.Table:
        """The frequent itemsets: ``items``, ``freq``."""
        self._require_model()
        return self.get_model_data()[0]

    @property
    def association_rules(self) -> pa.Table:
        """The association rules at ``min_confidence``: ``antecedent``, ``consequent``, ``confidence``,
        ``lift``, ``support``."""
        self._require_model()
        ante, cons, conf, lift, support = self._rules()
        return pa.table({"antecedent": _matrix_lists(ante, self._vocab),
                         "consequent": _matrix_lists([cons[:, None]], self._vocab),
                         "confidence": pa.array(conf, pa.float64()), "lift": pa.array(lift, pa.float64()),
                         "support": pa.array(support, pa.float64())})

    def output_schema(self, input_schema: Any, *other_schemas: Any) -> pa.Schema:
        stage = type(self).__name__
        input_schema = _as_schema(input_schema, stage)
        if self.items_col not in input_schema.names:
            raise SchemaError(f"{stage}: input column '{self.items_col}' (parameter 'items_col') is missing; the "
                             f"input has columns {input_schema.names}")
        t = input_schema.field(self.items_col).type
        if not _is_list(t):
            raise SchemaError(f"{stage}: column '{self.items_col}' (parameter 'items_col') has type {t}; expected "
                              f"arrays of items")
        fields = [f for f in input_schema if f.name != self.prediction_col]
        return pa.schema(fields + [pa.field(self.prediction_col, pa.list_(t.value_type))])

    def _transform(self, *tables: pa.Table) -> pa.Table:
        (t,) = tables
        self._require_model()
        stage = type(self).__name__
        col = require_column(t, self.items_col, stage, "items_col")
        out_type = self.output_schema(t.schema).field(self.prediction_col).type
        arr = _one_array(col)
        n_rows = len(arr)
        values = _items(arr, self.items_col, stage)
        vocab = self._vocab
        if len(values) and values.type != vocab.type:
            try:
                values = values.cast(vocab.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise TypeError(f"{stage}: column '{self.items_col}' holds items of type {values.type}, the model's "
                                f"items are {vocab.type}") from None
        rows = pc.list_parent_indices(arr).to_numpy().astype(np.int64)
        idx = pc.index_in(values, value_set=vocab)
        known = np.asarray(idx.is_valid().to_numpy(zero_copy_only=False))  # items never seen in training: no rule
        rows, codes = rows[known], pc.fill_null(idx, 0).to_numpy().astype(np.int64)[known]
        ante, cons, *_ = self._rules()
        if len(cons) == 0 or n_rows == 0:
            empty = pa.ListArray.from_arrays(pa.array(np.zeros(n_rows + 1, np.int32)), pa.array([], vocab.type))
            return with_column(t, self.prediction_col, empty.cast(out_type))
        r, item = _fire_rules(rows, codes, n_rows, len(vocab), ante, cons)
        offsets = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=n_rows))]).astype(np.int32)
        pred = pa.ListArray.from_arrays(pa.array(offsets), vocab.take(pa.array(item, pa.int64()))).cast(out_type)
        return with_column(t, self.prediction_col, pred)
