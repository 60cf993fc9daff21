"""Runs a function over chunks of work on the machine's cores: the calling thread and a small
shared pool of Python threads pull the chunks, so ``nogil`` Numba kernels (and NumPy calls that
release the GIL, such as ``ndarray.sort``) run side by side.

Why not Numba's ``parallel=True``: its default ``workqueue`` threading layer refuses (or aborts on)
concurrent calls from several Python threads, and callers do run concurrently (``CrossValidator``
and ``TrainValidationSplit`` fit candidates in threads, a server predicts in threads). Here any
number of threads may call :func:`parallel_map` at once: each caller works through its own chunks
and the pool only helps. A caller never waits for a helper task that has not started (it cancels
those), so a call from inside a pool thread, or a pool busy with other callers, cannot deadlock.

Results come back in the order of the chunks, whatever thread ran them: a reduction over fixed
chunks merged in that order gives the same numbers with one thread or many.

Example:
    >>> from flowlearn._parallel import parallel_map
    >>> parallel_map(lambda lo: sum(range(lo, lo + 10)), range(0, 40, 10))
    [45, 145, 245, 345]
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

__all__ = ["num_threads", "parallel_map", "chunk_bounds"]

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None


def num_threads() -> int:
    """The number of cores this process may run on (its CPU affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _helpers() -> ThreadPoolExecutor:
    """The shared pool of ``num_threads() - 1`` helper threads, created on first use (again in a
    forked child, whose copy of the parent's pool has no threads)."""
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(max_workers=max(1, num_threads() - 1), thread_name_prefix="flowlearn-chunks")
            _pool_pid = os.getpid()
        return _pool


def chunk_bounds(n: int, rows: int) -> list[tuple[int, int]]:
    """``[(lo, hi), ...]``: ``0 .. n`` cut into consecutive chunks of ``rows`` (the last shorter)."""
    return [(lo, min(n, lo + rows)) for lo in range(0, n, max(1, rows))]


def parallel_map(fn: Callable[[T], R], items: Iterable[T], threads: int | None = None) -> list[R]:
    """``[fn(item) for item in items]``, the items shared among the calling thread and up to
    ``threads - 1`` helper threads (default: one per core). ``fn`` must be safe to run in several
    threads at once (e.g. a ``nogil`` kernel writing only its own chunk of the output). The first
    exception raised by ``fn`` is raised here once no thread runs ``fn`` any more."""
    items = list(items)
    threads = num_threads() if threads is None else max(1, int(threads))
    if len(items) <= 1 or threads == 1:
        return [fn(item) for item in items]
    results: list = [None] * len(items)
    errors: list[BaseException] = []
    next_index = iter(range(len(items)))
    take = threading.Lock()

    def drain() -> None:
        while not errors:
            with take:
                i = next(next_index, None)
            if i is None:
                return
            try:
                results[i] = fn(items[i])
            except BaseException as e:  # noqa: BLE001 - re-raised by the caller below
                errors.append(e)
                return

    pool = _helpers()
    futures = [pool.submit(drain) for _ in range(min(threads, len(items)) - 1)]
    drain()
    for f in futures:
        if not f.cancel():   # started: it is running chunks (or done); never wait for one still queued
            f.result()
    if errors:
        raise errors[0]
    return results
