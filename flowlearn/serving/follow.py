"""``StoreFollower``: keeps a ``LocalPredictor`` on the newest valid version of a model store.

A daemon thread watches the store (``ModelStore`` or ``KafkaModelStore``): it lists the store
every ``poll_interval`` seconds and, with ``notify`` on a local filesystem, is woken by a
file-system notification of the store's ``LATEST`` marker (or, where there are none, checks it
every ``notify_interval`` seconds), so a publish is served within milliseconds. Each new valid version is loaded, verified against its ``_COMMITTED`` checksums
and handed to ``predictor.swap(model, version)``, which replaces the whole pipeline at once.
Torn versions are invisible to the watcher; corrupt ones are skipped with a logged error and
counted in ``errors``, so the predictor keeps serving the previous version. Versions only move
forward. The follower holds its predictor weakly, so it never keeps a dropped predictor alive
(a ``LocalPredictor`` dropped without ``close()`` stops the follower it started).

Example:
    >>> import flowlearn as fl, tempfile
    >>> from flowlearn.modelstream import ModelStore
    >>> from flowlearn.serving.follow import StoreFollower
    >>> @fl.register_stage
    ... class Echo(fl.Model):
    ...     def row_fn(self):
    ...         return lambda row: None
    >>> store = ModelStore(tempfile.mkdtemp())
    >>> _ = store.publish(Echo().set_model_data({"w": [1.0]}))
    >>> predictor = fl.LocalPredictor(store.load().model)
    >>> follower = StoreFollower(store, predictor, poll_interval=0.05)
    >>> follower.wait_for(1, timeout=5)
    True
    >>> predictor.model_version
    1
    >>> follower.close()
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from typing import Any

__all__ = ["StoreFollower"]

logger = logging.getLogger("flowlearn.serving")


class StoreFollower:
    """Follow ``store`` and swap each new valid version into ``predictor`` (on a daemon thread).

    ``after``: only versions newer than this are swapped in (default: the predictor's current
    ``model_version``; ``None`` there means the store's newest valid version is swapped in first).
    ``swaps``, ``errors`` (corrupt versions skipped and versions ``swap`` refused), ``last_error``,
    ``version`` and ``last_swap_at`` report progress.
    """

    def __init__(self, store: Any, predictor: Any, poll_interval: float = 0.2, *, notify: bool = True,
                 notify_interval: float = 0.005, after: int | None = None, start: bool = True) -> None:
        if poll_interval <= 0:
            raise ValueError(f"StoreFollower: parameter 'poll_interval' = {poll_interval!r} violates gt(0): "
                             f"it must be greater than 0.")
        self.store = store
        self._predictor = weakref.ref(predictor)
        self.poll_interval = float(poll_interval)
        self.notify = notify
        self.notify_interval = float(notify_interval)
        self._after = after if after is not None else getattr(predictor, "model_version", None)
        self.swaps = 0
        self.errors = 0
        self.last_error: BaseException | None = None
        self.last_swap_at: float | None = None
        self._cond = threading.Condition()
        self._watcher: Any = None
        self._thread: threading.Thread | None = None
        if start:
            self.start()

    @property
    def predictor(self) -> Any:
        """The predictor kept current (None once it has been garbage-collected)."""
        return self._predictor()

    @property
    def version(self) -> int | None:
        """The version the predictor serves."""
        return getattr(self.predictor, "model_version", None)

    def start(self) -> "StoreFollower":
        if self._thread is not None:
            return self
        self._watcher = self.store.watch(self.poll_interval, after=self._after, latest_only=True,
                                         notify=self.notify, notify_interval=self.notify_interval)
        self._watcher.on_corrupt = self._skipped_corrupt
        self._thread = threading.Thread(target=self._run, name=f"flowlearn-follow-{self.store!r}", daemon=True)
        self._thread.start()
        return self

    def _skipped_corrupt(self, version: int, error: Exception) -> None:
        self.errors += 1
        self.last_error = error

    def _run(self) -> None:
        for mv in self._watcher:
            if not self._swap_in(mv):
                break

    def _swap_in(self, mv: Any) -> bool:
        """Serve ``mv`` if it is newer; False once the predictor is gone. (A method of its own so
        that no frame of the waiting thread holds the predictor.)"""
        predictor = self._predictor()
        if predictor is None:
            return False
        current = predictor.model_version
        if current is not None and mv.version <= current:
            return True
        try:
            predictor.swap(mv.model, mv.version)
        except Exception as e:  # noqa: BLE001 - a bad version must not stop the follower
            self.errors += 1
            self.last_error = e
            logger.error("%r: version %d could not be served (%s: %s); still serving version %s",
                         self.store, mv.version, type(e).__name__, e, current)
            return True
        with self._cond:
            self.swaps += 1
            self.last_swap_at = time.time()
            self._cond.notify_all()
        logger.info("%r: now serving version %d", self.store, mv.version)
        return True

    def wait_for(self, version: int, timeout: float | None = None) -> bool:
        """Block until the predictor serves ``version`` or newer; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while (self.version or 0) < version:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining if remaining is not None else 0.5)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Stop following (the predictor keeps serving its current version)."""
        if self._watcher is not None:
            self._watcher.close(timeout)
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def __enter__(self) -> "StoreFollower":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
