"""flowlearn._parallel.parallel_map: the chunk runner behind the threaded kernels (KMeans, Knn,
RobustScaler). Oracles: the plain list comprehension over the same items."""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from flowlearn._parallel import chunk_bounds, parallel_map


def test_results_in_item_order_whatever_thread_ran_them():
    items = list(range(50))
    assert parallel_map(lambda i: i * i, items) == [i * i for i in items]
    assert parallel_map(lambda i: i, [], threads=4) == []
    assert parallel_map(lambda i: i + 1, [7], threads=4) == [8]


def test_chunk_bounds_cover_the_rows_once():
    assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(0, 4) == []


def test_nested_and_concurrent_callers_do_not_deadlock():
    # a call from inside the pool's own threads, and many callers at once, must all finish
    def inner(i):
        return sum(parallel_map(lambda j: i * j, range(6)))

    def outer(_):
        return parallel_map(inner, range(8))

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(outer, range(12)))
    want = [sum(i * j for j in range(6)) for i in range(8)]
    assert results == [want] * 12


def test_first_error_is_raised_after_the_work_stops():
    def fn(i):
        if i == 3:
            raise ValueError("bad chunk 3")
        return i

    with pytest.raises(ValueError, match="bad chunk 3"):
        parallel_map(fn, range(20), threads=2)
