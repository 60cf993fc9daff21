"""Prediction work off the event loop, coalesced into jobs on worker threads.

The event loop hands each request's work (decode, check, predict, encode: a plain function
call) to a :class:`WorkQueue` and awaits the answer. At most ``max_jobs`` jobs run at once, on
threads; a job takes every waiting request (up to ``max_items`` and ``max_bytes`` of bodies) and
runs them one after the other, then hands all the answers back to the loop in one call. So under
load many concurrent single-row requests cost one thread hand-off and one loop wake-up instead of
one each, with no added delay when idle (a request that finds a free job slot starts at once).
Each request is still computed on its own (its own model version, its own error). ``max_items``
is 16: in ``benchmarks/bench_http_load.py`` jobs of 8-16 requests gave lower p99 latencies than
jobs of 64, whose answers all wait for the whole job.

A request that waits longer than ``timeout`` seconds without being taken by a job is answered by
``on_timeout()`` (the server's 503 with ``Retry-After``); once taken it runs to the end.

Example:
    >>> import asyncio
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> async def main():
    ...     with ThreadPoolExecutor(2) as pool:
    ...         q = WorkQueue(asyncio.get_running_loop(), pool, max_jobs=2, timeout=5.0, on_timeout=lambda: None)
    ...         return await asyncio.gather(*(q.submit(pow, 2, i) for i in range(5)))
    >>> asyncio.run(main())
    [1, 2, 4, 8, 16]
"""
from __future__ import annotations

import asyncio
import threading
from collections import deque
from concurrent.futures import Executor
from typing import Any, Callable

__all__ = ["WorkQueue"]


class _Item:
    __slots__ = ("fn", "args", "size", "future", "taken", "timer")

    def __init__(self, fn: Callable, args: tuple, size: int, future: asyncio.Future) -> None:
        self.fn, self.args, self.size, self.future = fn, args, size, future
        self.taken = False
        self.timer: asyncio.TimerHandle | None = None


class WorkQueue:
    """Coalesces calls into jobs on ``executor`` threads (see the module docstring).

    ``submit(fn, *args, size=n)`` (on the loop) returns an awaitable for ``fn(*args)``'s result
    (an exception raised by ``fn`` is raised by the await). ``size`` (body bytes) bounds how much
    one job takes: ``max_bytes``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, executor: Executor, max_jobs: int, timeout: float,
                 on_timeout: Callable[[], BaseException], max_items: int = 16, max_bytes: int = 4 << 20) -> None:
        self.loop, self.executor = loop, executor
        self.max_jobs, self.timeout, self.on_timeout = max_jobs, timeout, on_timeout
        self.max_items, self.max_bytes = max_items, max_bytes
        self._pending: deque[_Item] = deque()
        self._lock = threading.Lock()
        self.running = 0               # jobs on threads now
        self.jobs = 0                  # jobs run so far
        self.items = 0                 # calls run so far (items / jobs: the mean coalescing)

    def submit(self, fn: Callable, *args: Any, size: int = 0) -> asyncio.Future:
        item = _Item(fn, args, size, self.loop.create_future())
        with self._lock:
            self._pending.append(item)
            start = self.running < self.max_jobs
            if start:
                self.running += 1
        if start:
            self.executor.submit(self._job)
        else:
            item.timer = self.loop.call_later(self.timeout, self._expire, item)
        return item.future

    def _expire(self, item: _Item) -> None:
        with self._lock:
            if item.taken:
                return
            item.taken = True          # never run: the job that finds it skips it
        if not item.future.done():
            item.future.set_exception(self.on_timeout())

    def _take(self) -> list[_Item] | None:
        with self._lock:
            batch: list[_Item] = []
            size = 0
            while self._pending and len(batch) < self.max_items:
                item = self._pending[0]
                if item.taken:
                    self._pending.popleft()
                    continue
                if batch and size + item.size > self.max_bytes:
                    break
                self._pending.popleft()
                item.taken = True
                batch.append(item)
                size += item.size
            if not batch:
                self.running -= 1
                return None
            return batch

    def _job(self) -> None:
        """On a worker thread: run what is waiting until nothing is."""
        while (batch := self._take()) is not None:
            results: list[tuple[bool, Any]] = []
            for item in batch:
                try:
                    results.append((True, item.fn(*item.args)))
                except BaseException as e:  # noqa: BLE001 - handed to the awaiting request
                    results.append((False, e))
            self.jobs += 1
            self.items += len(batch)
            try:
                self.loop.call_soon_threadsafe(self._deliver, batch, results)
            except RuntimeError:       # the loop is closed: nobody waits any more
                return

    @staticmethod
    def _deliver(batch: list[_Item], results: list[tuple[bool, Any]]) -> None:
        for item, (ok, value) in zip(batch, results):
            if item.timer is not None:
                item.timer.cancel()
            f = item.future
            if f.done():               # the client went away
                continue
            if ok:
                f.set_result(value)
            else:
                f.set_exception(value)
