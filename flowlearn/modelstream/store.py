"""``ModelStore``: a versioned model stream on a filesystem (local path or fsspec URL).

Layout::

    <root>/versions/<version:012d>/   a saved stage (``persist.write_stage_files``) + _COMMITTED
    <root>/LATEST                     notification marker, replaced after every publish

``_COMMITTED`` is JSON: the sha256 of every file of the version, the version number,
``created_at``, the stage class and the user's metadata. A version directory without a valid
``_COMMITTED`` is invisible to readers. A version whose files do not match their checksums
(tampered, truncated, unreadable) is *corrupt*: readers skip it with a logged error and stay
on the previous version.

Publishing on a local filesystem writes the whole version into a temporary directory beside
the versions and renames it onto ``versions/<N>``; the rename fails when ``N`` exists, and the
publisher retries with the next number. Several publishers, in threads or in separate
processes, therefore get distinct, strictly increasing version numbers, and a reader sees
either no version ``N`` or all of it. On other fsspec filesystems (object stores) the version
directory is claimed with ``makedirs(exist_ok=False)`` and ``_COMMITTED`` is written last, so
torn versions stay invisible; exclusive numbering among concurrent publishers is only
guaranteed where ``makedirs`` is exclusive (local and POSIX-like filesystems).

Example:
    >>> import flowlearn as fl, tempfile
    >>> from flowlearn.modelstream import ModelStore
    >>> @fl.register_stage
    ... class Constant(fl.Model):
    ...     def _transform(self, t):
    ...         return t
    >>> store = ModelStore(tempfile.mkdtemp(), keep_last=5)
    >>> store.publish(Constant().set_model_data({"c": [1.0]}), metadata={"auc": 0.91})
    1
    >>> mv = store.load()
    >>> mv.version, mv.metadata["auc"], type(mv.model).__name__
    (1, 0.91, 'Constant')
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import posixpath
import re
import shutil
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import fsspec
from fsspec.implementations.local import LocalFileSystem

from flowlearn.api import Model, Stage, Transformer
from flowlearn.builder import GraphModel, PipelineModel
from flowlearn.persist import load_stage_files as _load_stage_files
from flowlearn.persist import write_stage_files

__all__ = ["ModelVersion", "ModelStore", "CorruptVersionError", "Watcher", "open_store"]

logger = logging.getLogger("flowlearn.modelstream")

COMMIT_FILE = "_COMMITTED"
LATEST_FILE = "LATEST"
_BACKSTOP_CHECKS = 10   # with notifications, the marker is still stat-ed every 10 notify intervals
COMMIT_FORMAT = "flowlearn.model_version"
COMMIT_FORMAT_VERSION = 1
_VERSION_RE = re.compile(r"^\d{12}$")
_STALE_TMP_SECONDS = 3600.0
_MAX_VERSION = 10**12          # version directories have 12 digits


class CorruptVersionError(ValueError):
    """A committed model version whose files fail their checksums or cannot be loaded."""


@dataclass(frozen=True)
class ModelVersion:
    """One version of a model stream: the number, when it was published, the model and metadata."""

    version: int
    created_at: float
    model: Any
    metadata: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Shared helpers (also used by the Kafka store, whose messages carry a version directory as tar).

def _sha256_file(fs: Any, path: str, local: bool) -> str:
    h = hashlib.sha256()
    f = open(path, "rb") if local else fs.open(path, "rb")
    with f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _list_files(fs: Any, root: str, local: bool) -> list[str]:
    """Relative ('/'-separated) paths of every file under root."""
    out = []
    if local:
        for dirpath, _dirs, files in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            for name in files:
                rel = name if rel_dir == "." else posixpath.join(rel_dir.replace(os.sep, "/"), name)
                out.append(rel)
    else:
        prefix = fs._strip_protocol(root).rstrip("/") + "/"
        for p in fs.find(root):
            if p.startswith(prefix):
                out.append(p[len(prefix):])
    return sorted(out)


def _checksums(fs: Any, root: str, local: bool) -> dict[str, str]:
    return {rel: _sha256_file(fs, posixpath.join(root, rel), local)
            for rel in _list_files(fs, root, local) if rel != COMMIT_FILE}


def _commit_doc(version: int, created_at: float, metadata: dict, cls_name: str, files: dict[str, str]) -> dict:
    return {"format": COMMIT_FORMAT, "format_version": COMMIT_FORMAT_VERSION, "version": version,
            "created_at": created_at, "class": cls_name, "metadata": metadata, "files": files}


def _parse_commit(text: str | bytes, version: int | None) -> dict | None:
    """The parsed ``_COMMITTED`` document, or None when it is not a valid one for ``version``."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != COMMIT_FORMAT:
        return None
    if not isinstance(doc.get("format_version"), int) or doc["format_version"] > COMMIT_FORMAT_VERSION:
        return None
    if not isinstance(doc.get("version"), int) or (version is not None and doc["version"] != version):
        return None
    files = doc.get("files")
    if not isinstance(files, dict) or "metadata.json" not in files:
        return None
    if not isinstance(doc.get("created_at"), (int, float)) or not isinstance(doc.get("metadata", {}), dict):
        return None
    return doc


def _stage_class_name(model: Any) -> str:
    return type(model).__dict__.get("_registered_name") or type(model).__name__


def _check_publishable(model: Any, metadata: dict | None) -> dict:
    if not isinstance(model, Stage) or not isinstance(model, Transformer):
        raise TypeError(f"publish expects a fitted Model or PipelineModel, got {type(model).__name__}")
    if isinstance(model, Model) and not isinstance(model, (PipelineModel, GraphModel)):
        model._require_model()
    metadata = dict(metadata or {})
    try:
        json.dumps(metadata)
    except (TypeError, ValueError) as e:
        raise TypeError(f"publish: metadata must be JSON-serializable ({e})") from None
    return metadata


def _verify_dir(fs: Any, root: str, doc: dict, local: bool, where: str) -> None:
    """Raise CorruptVersionError unless the files under root are exactly those in ``doc``."""
    try:
        actual = _checksums(fs, root, local)
    except OSError as e:
        raise CorruptVersionError(f"{where}: cannot read its files ({e})") from None
    expected = doc["files"]
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    bad = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
    if missing or extra or bad:
        parts = []
        if bad:
            parts.append(f"checksum mismatch in {bad}")
        if missing:
            parts.append(f"missing files {missing}")
        if extra:
            parts.append(f"unexpected files {extra}")
        raise CorruptVersionError(f"{where} is corrupt: " + "; ".join(parts))


def _load_dir(fs: Any, root: str, doc: dict, local: bool, where: str) -> ModelVersion:
    """Verify then load the version directory ``root`` described by ``doc``."""
    _verify_dir(fs, root, doc, local, where)
    try:
        model = _load_stage_files(fs, root)
    except FileNotFoundError:
        raise
    except Exception as e:  # a checksummed but unloadable stage (bad class, bad Arrow, bad params)
        raise CorruptVersionError(f"{where} cannot be loaded: {type(e).__name__}: {e}") from None
    return ModelVersion(int(doc["version"]), float(doc["created_at"]), model, dict(doc.get("metadata") or {}))


# --------------------------------------------------------------------------------------------
# Watchers

class Watcher:
    """An iterator over new :class:`ModelVersion` s of a store, newest last; ``close()`` ends it.

    Iterating blocks until a new valid version arrives (corrupt ones are skipped with a logged
    error, and passed to ``on_corrupt(version, error)`` when that attribute is set). With
    ``callback=`` given to ``store.watch``, a daemon thread calls it for each version instead.
    Errors while polling (an unreachable filesystem or broker) are logged and retried.
    """

    def __init__(self, poll_interval: float) -> None:
        if poll_interval <= 0:
            raise ValueError(f"watch: poll_interval = {poll_interval!r} violates gt(0): it must be greater than 0.")
        self.poll_interval = float(poll_interval)
        self._closed = threading.Event()
        self._queue: deque[ModelVersion] = deque()
        self._thread: threading.Thread | None = None
        self._errors_logged = 0
        self.on_corrupt: Callable[[int, Exception], Any] | None = None

    def _skipped_corrupt(self, version: int, error: Exception) -> None:
        """A new version this watcher skipped because it is corrupt (the store has logged it)."""
        if self.on_corrupt is not None:
            self.on_corrupt(version, error)

    def __iter__(self) -> Iterator[ModelVersion]:
        return self

    def __next__(self) -> ModelVersion:
        while True:
            if self._closed.is_set():
                raise StopIteration
            if self._queue:
                return self._queue.popleft()
            try:
                self._queue.extend(self._fetch())
            except Exception:  # noqa: BLE001 - a watcher must survive transient failures
                if self._closed.is_set():
                    raise StopIteration from None
                logger.exception("model store watcher: polling failed; retrying in %.3fs", self.poll_interval)
                self._closed.wait(self.poll_interval)

    def _fetch(self) -> list[ModelVersion]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _start_callback(self, callback: Callable[[ModelVersion], Any], name: str) -> "Watcher":
        def run() -> None:
            for mv in self:
                try:
                    callback(mv)
                except Exception:  # noqa: BLE001
                    logger.exception("model store watcher: callback failed on version %d", mv.version)

        self._thread = threading.Thread(target=run, name=name, daemon=True)
        self._thread.start()
        return self

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop watching (and join the callback thread, if any)."""
        self._closed.set()
        self._close_resources()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)

    def _close_resources(self) -> None:
        pass

    def __enter__(self) -> "Watcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _MarkerNotifier:
    """File-system notifications (watchdog: inotify, FSEvents or ReadDirectoryChangesW) of store
    roots' ``LATEST`` markers. One observer thread per process, one watch per store root however
    many watchers follow it; each watcher subscribes an event that a publish sets."""

    _lock = threading.Lock()
    _observer: Any = None
    _roots: dict[str, tuple[Any, set[threading.Event]]] = {}

    @classmethod
    def subscribe(cls, root: str) -> threading.Event:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        root = os.path.abspath(root)
        event = threading.Event()
        with cls._lock:
            if cls._observer is None:
                obs = Observer()
                obs.daemon = True
                obs.start()
                cls._observer = obs
            entry = cls._roots.get(root)
            if entry is None:
                subscribers: set[threading.Event] = set()

                class _Handler(FileSystemEventHandler):
                    def on_any_event(self, ev: Any) -> None:
                        paths = (ev.src_path, getattr(ev, "dest_path", ""))
                        if any(os.path.basename(os.fsdecode(p)) == LATEST_FILE for p in paths if p):
                            for e in list(subscribers):
                                e.set()

                entry = cls._roots[root] = (cls._observer.schedule(_Handler(), root, recursive=False), subscribers)
            entry[1].add(event)
        return event

    @classmethod
    def unsubscribe(cls, root: str, event: threading.Event) -> None:
        root = os.path.abspath(root)
        with cls._lock:
            entry = cls._roots.get(root)
            if entry is None:
                return
            entry[1].discard(event)
            if not entry[1]:
                del cls._roots[root]
                try:
                    cls._observer.unschedule(entry[0])
                except Exception:  # noqa: BLE001 - the root may be gone; its watch with it
                    pass


class _FsWatcher(Watcher):
    def __init__(self, store: "ModelStore", poll_interval: float, after: int | None, latest_only: bool,
                 notify: bool, notify_interval: float) -> None:
        super().__init__(poll_interval)
        self._store = store
        self._last = after
        self._latest_only = latest_only
        self._notify = notify and store._local
        self._notify_interval = notify_interval
        self._first = True
        self._changed: threading.Event | None = None
        if self._notify:
            try:
                self._changed = _MarkerNotifier.subscribe(store._root)
                # unsubscribed by close(), or when the watcher is dropped unclosed
                self._unsubscribe = weakref.finalize(self, _MarkerNotifier.unsubscribe, store._root, self._changed)
            except Exception as e:  # noqa: BLE001 - no notifications here (e.g. inotify limits): stat the marker
                logger.info("%s: no file-system notifications (%s: %s); checking the %s marker every %.3fs",
                            store.url, type(e).__name__, e, LATEST_FILE, notify_interval)
        self._token = store._marker_token() if self._notify else None

    @property
    def notifications(self) -> bool:
        """True when file-system notifications (not only marker checks) wake this watcher."""
        return self._changed is not None

    def _close_resources(self) -> None:
        if self._changed is not None:
            self._unsubscribe()
            self._changed.set()

    def _fetch(self) -> list[ModelVersion]:
        if self._first:
            self._first = False
            if self._last is None:
                mv = self._store._latest_valid(self._skipped_corrupt)
                if mv is None:
                    self._last = 0
                    return []
                self._last = mv.version
                return [mv]
        deadline = time.monotonic() + self.poll_interval
        # With notifications, the marker is also checked every _BACKSTOP_CHECKS notify intervals:
        # events can be lost (a deleted and re-created root, writes from other hosts on NFS).
        interval = self._notify_interval * (_BACKSTOP_CHECKS if self._changed is not None else 1)
        while not self._closed.is_set():
            if self._changed is not None and self._changed.is_set():
                self._changed.clear()
                self._token = self._store._marker_token()
                break
            if self._notify:
                tok = self._store._marker_token()
                if tok != self._token:
                    self._token = tok
                    break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if self._changed is not None:
                self._changed.wait(min(remaining, interval))
            else:
                self._closed.wait(min(remaining, interval) if self._notify else remaining)
        if self._closed.is_set():
            return []
        return self._scan()

    def _scan(self) -> list[ModelVersion]:
        new = [v for v in self._store.versions() if v > (self._last or 0)]
        if not new:
            return []
        out: list[ModelVersion] = []
        order = list(reversed(new)) if self._latest_only else new
        for v in order:
            mv = self._store._try_load(v, on_corrupt=self._skipped_corrupt)
            if mv is not None:
                out.append(mv)
                if self._latest_only:
                    break
        self._last = new[-1]
        return out


# --------------------------------------------------------------------------------------------
# The filesystem store

class ModelStore:
    """A versioned model stream on a local path or an fsspec URL.

    ``publish(model, metadata)`` adds a version (atomically; numbers strictly increase across
    threads and processes); ``versions()`` lists the committed ones; ``load(version=None)`` and
    ``latest()`` return a :class:`ModelVersion` (``None``: the newest valid one, skipping corrupt
    versions with a logged error); ``watch(poll_interval)`` follows new versions; ``rollback(v)``
    republishes version ``v`` as a new version. ``keep_last`` deletes all but the newest
    ``keep_last`` committed versions after each publish (never the latest).

    Example:
        >>> import flowlearn as fl, tempfile
        >>> from flowlearn.modelstream import ModelStore
        >>> @fl.register_stage
        ... class Bias(fl.Model):
        ...     def _transform(self, t):
        ...         return t
        >>> store = ModelStore(tempfile.mkdtemp())
        >>> [store.publish(Bias().set_model_data({"b": [float(i)]})) for i in range(3)]
        [1, 2, 3]
        >>> store.rollback(1), store.load().metadata
        (4, {'rollback_of': 1})
    """

    def __init__(self, url: str, keep_last: int | None = None) -> None:
        if keep_last is not None and (isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1):
            raise ValueError(f"ModelStore: parameter 'keep_last' = {keep_last!r} violates gt_eq(1): it must be an "
                             f"integer greater than or equal to 1 (or None to keep every version).")
        self.url = str(url)
        self.keep_last = keep_last
        self._fs, root = fsspec.core.url_to_fs(self.url)
        self._root = root.rstrip("/") or "/"
        self._local = isinstance(self._fs, LocalFileSystem)
        self._vdir = posixpath.join(self._root, "versions")
        self._latest_path = posixpath.join(self._root, LATEST_FILE)
        self._fs.makedirs(self._vdir, exist_ok=True)
        self._lock = threading.Lock()
        self._commits: dict[int, dict] = {}      # committed versions' parsed _COMMITTED (immutable)
        self._reported: set[int] = set()         # versions already logged as corrupt / invalid

    def __repr__(self) -> str:
        return f"ModelStore({self.url!r}, keep_last={self.keep_last!r})"

    def __reduce__(self) -> tuple:
        # a copy in another process (a Flink task manager) opens the same store afresh
        return (ModelStore, (self.url, self.keep_last))

    # ---- paths and listing
    def _vpath(self, version: int) -> str:
        return posixpath.join(self._vdir, f"{version:012d}")

    def _list_names(self) -> list[str]:
        if self._local:
            try:
                return os.listdir(self._vdir)
            except FileNotFoundError:
                return []
        try:
            self._fs.invalidate_cache(self._vdir)
        except Exception:  # noqa: BLE001 - not every filesystem caches listings
            pass
        try:
            return [posixpath.basename(p.rstrip("/")) for p in self._fs.ls(self._vdir, detail=False)]
        except FileNotFoundError:
            return []

    def _numbers(self) -> list[int]:
        return sorted(int(n) for n in self._list_names() if _VERSION_RE.match(n))

    def _read_commit(self, version: int) -> dict | None:
        path = posixpath.join(self._vpath(version), COMMIT_FILE)
        try:
            if self._local:
                with open(path, "rb") as f:
                    text = f.read()
            else:
                text = self._fs.cat_file(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        doc = _parse_commit(text, version)
        if doc is None and version not in self._reported:
            self._reported.add(version)
            logger.warning("%s: version %d has an invalid %s; it stays invisible", self.url, version, COMMIT_FILE)
        return doc

    def versions(self) -> list[int]:
        """Committed version numbers, ascending (versions without a valid ``_COMMITTED`` are left out)."""
        for _round in range(100):
            numbers = self._numbers()
            present = set(numbers)
            out, vanished = [], False
            for v in numbers:
                with self._lock:
                    doc = self._commits.get(v)
                if doc is None:
                    doc = self._read_commit(v)
                    if doc is None:
                        # deleted by retention since the listing: newer versions may be missing from it
                        vanished = vanished or not self._fs.exists(self._vpath(v))
                        continue
                    with self._lock:
                        self._commits[v] = doc
                out.append(v)
            with self._lock:
                for v in [v for v in self._commits if v not in present]:
                    del self._commits[v]
            if not vanished:
                break
        return out

    def latest_version(self) -> int | None:
        """The newest committed version number (not checked for corruption), or None."""
        vs = self.versions()
        return vs[-1] if vs else None

    def version_info(self, version: int | None = None) -> dict:
        """``{"version", "created_at", "class", "metadata", "files"}`` from ``_COMMITTED``, without loading."""
        v = self._resolve(version)
        doc = self._read_commit(v)
        if doc is None:
            raise LookupError(f"{self.url}: version {v} is not committed")
        return {"version": v, "created_at": doc["created_at"], "class": doc.get("class"),
                "metadata": dict(doc.get("metadata") or {}), "files": dict(doc["files"])}

    def _resolve(self, version: int | None) -> int:
        vs = self.versions()
        if version is None:
            if not vs:
                raise LookupError(f"{self.url}: the model store has no committed version")
            return vs[-1]
        if version not in vs:
            raise LookupError(f"{self.url}: no committed version {version}; committed versions: "
                              f"{_summarize(vs)}")
        return version

    # ---- reading
    def verify(self, version: int) -> None:
        """Raise :class:`CorruptVersionError` unless every file of ``version`` matches its checksum."""
        v = self._resolve(version)
        doc = self._read_commit(v)
        if doc is None:
            raise LookupError(f"{self.url}: version {v} is not committed")
        _verify_dir(self._fs, self._vpath(v), doc, self._local, f"{self.url} version {v}")

    def load(self, version: int | None = None) -> ModelVersion:
        """Load ``version``, or (``None``) the newest valid version, skipping corrupt ones with a logged error.

        Raises ``LookupError`` when the version (or any version) does not exist and
        :class:`CorruptVersionError` when an explicitly requested version is corrupt.
        """
        if version is None:
            mv = self._latest_valid()
            if mv is None:
                raise LookupError(f"{self.url}: the model store has no valid version")
            return mv
        v = self._resolve(version)
        try:
            return self._load_version(v)
        except CorruptVersionError as e:
            self._report_corrupt(v, e)
            raise
        except FileNotFoundError:
            raise LookupError(f"{self.url}: version {v} was deleted while loading (retention)") from None

    def latest(self) -> ModelVersion | None:
        """The newest valid version, or None when the store has none."""
        return self._latest_valid()

    def _load_version(self, v: int) -> ModelVersion:
        doc = self._read_commit(v)
        if doc is None:
            raise FileNotFoundError(self._vpath(v))
        try:
            mv = _load_dir(self._fs, self._vpath(v), doc, self._local, f"{self.url} version {v}")
        except CorruptVersionError:
            # Files vanishing mid-read because retention deleted the version is not corruption.
            if self._read_commit(v) is None:
                raise FileNotFoundError(self._vpath(v)) from None
            raise
        # Retention removes a version by renaming it away (or, elsewhere, by deleting _COMMITTED
        # first), never back: if _COMMITTED is still there, every file read was the verified one.
        if self._read_commit(v) is None:
            raise FileNotFoundError(self._vpath(v))
        return mv

    def _report_corrupt(self, v: int, e: Exception) -> None:
        with self._lock:
            first = v not in self._reported
            self._reported.add(v)
        if first:
            logger.error("%s; readers skip it and stay on the previous version", e)
        else:
            logger.debug("%s (already reported)", e)

    def _try_load(self, v: int, gone: list | None = None,
                  on_corrupt: Callable[[int, Exception], Any] | None = None) -> ModelVersion | None:
        """Load v; None (logged) when it is corrupt (then ``on_corrupt(v, error)`` is called) or was
        deleted meanwhile (then v is added to ``gone``)."""
        try:
            return self._load_version(v)
        except CorruptVersionError as e:
            self._report_corrupt(v, e)
            if on_corrupt is not None:
                on_corrupt(v, e)
        except (FileNotFoundError, NotADirectoryError):
            logger.debug("%s: version %d disappeared while loading (retention)", self.url, v)
            if gone is not None:
                gone.append(v)
        return None

    def _latest_valid(self, on_corrupt: Callable[[int, Exception], Any] | None = None) -> ModelVersion | None:
        tried: set[int] = set()
        for _round in range(100):
            vs = [v for v in self.versions() if v not in tried]
            if not vs:
                return None
            gone: list[int] = []
            for v in reversed(vs):
                tried.add(v)
                mv = self._try_load(v, gone, on_corrupt)
                if mv is not None:
                    return mv
                if gone:        # deleted by retention: list again, newer versions have arrived
                    break
            else:
                return None     # every remaining version is corrupt
        return None

    # ---- notification marker
    def _marker_token(self) -> Any:
        try:
            st = os.stat(self._latest_path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _write_marker(self, version: int, created_at: float) -> None:
        body = json.dumps({"version": version, "created_at": created_at}).encode()
        try:
            if self._local:
                tmp = posixpath.join(self._root, f".{LATEST_FILE}.{uuid.uuid4().hex}.tmp")
                with open(tmp, "wb") as f:
                    f.write(body)
                os.replace(tmp, self._latest_path)
            else:
                self._fs.pipe_file(self._latest_path, body)
        except OSError as e:  # the marker is only a hint for followers
            logger.warning("%s: could not update the %s marker (%s)", self.url, LATEST_FILE, e)

    def _marker_version(self) -> int:
        """The version the LATEST marker names (0 if missing or garbled); numbering never goes below it."""
        try:
            if self._local:
                with open(self._latest_path, "rb") as f:
                    v = int(json.loads(f.read())["version"])
            else:
                v = int(json.loads(self._fs.cat_file(self._latest_path))["version"])
        except Exception:  # noqa: BLE001 - a missing or garbled hint counts as 0
            return 0
        return v if 0 < v < _MAX_VERSION else 0

    # ---- publishing
    def publish(self, model: Any, metadata: dict | None = None) -> int:
        """Add ``model`` (a Model or PipelineModel) as the next version; returns its number."""
        metadata = _check_publishable(model, metadata)
        created_at = time.time()
        cls_name = _stage_class_name(model)
        if self._local:
            v = self._publish_local(model, metadata, created_at, cls_name)
        else:
            v = self._publish_generic(model, metadata, created_at, cls_name)
        self._write_marker(v, created_at)
        logger.info("%s: published version %d (%s)", self.url, v, cls_name)
        if self.keep_last is not None:
            self._apply_retention()
        return v

    def _next_number(self) -> int:
        nums = self._numbers()
        v = max(nums[-1] if nums else 0, self._marker_version()) + 1
        if v >= _MAX_VERSION:
            raise OverflowError(f"{self.url}: version numbers are exhausted ({_MAX_VERSION - 1} is the last)")
        return v

    def _publish_local(self, model: Any, metadata: dict, created_at: float, cls_name: str) -> int:
        tmp = posixpath.join(self._vdir, f".tmp-{uuid.uuid4().hex}")
        try:
            write_stage_files(model, self._fs, tmp)
            files = _checksums(self._fs, tmp, True)
            v = self._next_number()
            for _attempt in range(10_000):
                with open(posixpath.join(tmp, COMMIT_FILE), "w") as f:
                    json.dump(_commit_doc(v, created_at, metadata, cls_name, files), f, indent=1, sort_keys=True)
                try:
                    os.rename(tmp, self._vpath(v))   # atomic; fails if version v exists (non-empty)
                    return v
                except OSError as e:
                    if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                v = max(v + 1, self._next_number())
            raise RuntimeError(f"{self.url}: could not claim a version number after 10000 attempts")
        finally:
            if os.path.exists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)

    def _publish_generic(self, model: Any, metadata: dict, created_at: float, cls_name: str) -> int:
        v = self._next_number()
        for _attempt in range(10_000):
            try:
                self._fs.makedirs(self._vpath(v), exist_ok=False)
                break
            except FileExistsError:
                v = max(v + 1, self._next_number())
        else:
            raise RuntimeError(f"{self.url}: could not claim a version number after 10000 attempts")
        root = self._vpath(v)
        write_stage_files(model, self._fs, root)
        files = _checksums(self._fs, root, False)
        body = json.dumps(_commit_doc(v, created_at, metadata, cls_name, files), indent=1, sort_keys=True)
        self._fs.pipe_file(posixpath.join(root, COMMIT_FILE), body.encode())   # the commit point
        return v

    def rollback(self, to_version: int, metadata: dict | None = None) -> int:
        """Republish version ``to_version`` as a new version (metadata gets ``rollback_of``); returns it."""
        old = self.load(to_version)
        md = dict(old.metadata)
        md.pop("rollback_of", None)
        md.update(metadata or {})
        md["rollback_of"] = old.version
        return self.publish(old.model, md)

    # ---- retention
    def _apply_retention(self) -> None:
        keep = self.keep_last
        assert keep is not None
        committed = self.versions()
        for v in committed[:-keep]:          # never the newest `keep`, so never the latest
            self._delete(v)
        if self._local:
            self._clean_stale_tmp()

    def _delete(self, v: int) -> None:
        path = self._vpath(v)
        try:
            if self._local:
                trash = posixpath.join(self._vdir, f".trash-{v:012d}-{uuid.uuid4().hex}")
                os.rename(path, trash)       # disappears atomically for readers
                shutil.rmtree(trash, ignore_errors=True)
            else:
                self._fs.rm(posixpath.join(path, COMMIT_FILE))   # invisible first
                self._fs.rm(path, recursive=True)
            logger.info("%s: retention deleted version %d (keep_last=%d)", self.url, v, self.keep_last)
        except FileNotFoundError:
            pass                             # another publisher deleted it
        with self._lock:
            self._commits.pop(v, None)

    def _clean_stale_tmp(self) -> None:
        now = time.time()
        for name in self._list_names():
            if name.startswith((".tmp-", ".trash-")):
                p = posixpath.join(self._vdir, name)
                try:
                    if now - os.stat(p).st_mtime > _STALE_TMP_SECONDS:
                        shutil.rmtree(p, ignore_errors=True)
                except OSError:
                    pass

    # ---- following
    def watch(self, poll_interval: float = 0.2, *, after: int | None = None, latest_only: bool = False,
              notify: bool = True, notify_interval: float = 0.005,
              callback: Callable[[ModelVersion], Any] | None = None) -> Watcher:
        """Follow new versions: an iterator of :class:`ModelVersion` (or a daemon thread calling ``callback``).

        ``after=None`` starts with the current newest valid version; otherwise only versions
        newer than ``after`` are returned. The store is listed every ``poll_interval`` seconds;
        with ``notify`` (local filesystems) a file-system notification of the ``LATEST`` marker
        (watchdog: inotify on Linux, FSEvents on macOS, ReadDirectoryChangesW on Windows) wakes
        the watcher at once, so a publish is seen within milliseconds; the marker is also checked
        every ``10 * notify_interval`` seconds (one ``stat``) in case an event is lost, and every
        ``notify_interval`` where notifications cannot be had.
        ``latest_only`` returns only the newest valid version of those that arrived together.
        """
        w = _FsWatcher(self, poll_interval, after, latest_only, notify, notify_interval)
        if callback is not None:
            w._start_callback(callback, name=f"flowlearn-watch-{self._root}")
        return w


def _summarize(vs: list[int]) -> str:
    if not vs:
        return "none"
    if len(vs) <= 10:
        return ", ".join(map(str, vs))
    return f"{vs[0]} .. {vs[-1]} ({len(vs)} versions)"


def open_store(url: str, keep_last: int | None = None) -> Any:
    """A :class:`ModelStore` for a path or fsspec URL, or a ``KafkaModelStore`` for
    ``kafka://HOST:PORT[,HOST:PORT...]/TOPIC``."""
    if url.startswith("kafka://"):
        from flowlearn.modelstream.kafka_store import KafkaModelStore

        rest = url[len("kafka://"):]
        servers, _, topic = rest.partition("/")
        if not servers or not topic or "/" in topic:
            raise ValueError(f"{url!r}: a Kafka model store URL is kafka://HOST:PORT[,HOST:PORT...]/TOPIC")
        return KafkaModelStore(topic, servers, keep_last=keep_last)
    return ModelStore(url, keep_last=keep_last)
