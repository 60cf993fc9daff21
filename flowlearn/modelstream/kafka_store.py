"""``KafkaModelStore``: a versioned model stream on a Kafka topic.

Each version is one logical message: the version directory a :class:`ModelStore` would write
(the files ``persist.write_stage_files`` writes plus ``_COMMITTED``) as an uncompressed tar,
split into chunks of at most ``chunk_size`` bytes. Every chunk carries the headers
``flowlearn.version``, ``flowlearn.id`` (one id per publish attempt), ``flowlearn.chunk``,
``flowlearn.chunks`` and ``flowlearn.sha256`` (of the whole tar); chunk 0 also carries
``flowlearn.meta`` (JSON: ``created_at``, ``class``, ``metadata``). No pickle anywhere.

Versions live in partition 0 (the store creates the topic with one partition when it does
not exist). Readers assign the partition explicitly (no consumer group) and apply one
deterministic rule to the log, so every reader agrees on the versions:

* chunks are reassembled by publish id; a publish whose chunks never all arrive (a publisher
  that crashed) is invisible;
* a completed publish of version ``v`` is *accepted* when ``v`` is greater than every version
  completed before it in the log; otherwise it lost a race with a concurrent publisher and
  is ignored;
* an accepted version whose tar fails its sha256, or whose files fail their ``_COMMITTED``
  checksums, is corrupt: it is skipped with a logged error and readers stay on the previous one.

A publisher reads the topic to its end, publishes ``max + 1``, reads its own message back and
checks it was accepted; if a concurrent publisher won that number it retries with the next.
So versions strictly increase even with several publishers.

``keep_last`` bounds what readers keep and list; the messages themselves stay on the topic
until the topic's own retention (``retention.ms`` / ``retention.bytes``) removes them.

Example:
    >>> from flowlearn.modelstream import KafkaModelStore                 # doctest: +SKIP
    >>> store = KafkaModelStore("models.ctr", "127.0.0.1:9092", keep_last=10)   # doctest: +SKIP
    >>> v = store.publish(model, metadata={"auc": 0.91})                  # doctest: +SKIP
    >>> store.load().version == v                                         # doctest: +SKIP
    True
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import tarfile
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, Callable

from fsspec.implementations.local import LocalFileSystem

from flowlearn.modelstream.store import (
    COMMIT_FILE,
    CorruptVersionError,
    ModelVersion,
    Watcher,
    _check_publishable,
    _commit_doc,
    _load_dir,
    _parse_commit,
    _stage_class_name,
    _summarize,
)
from flowlearn.persist import write_stage_files

__all__ = ["KafkaModelStore"]

logger = logging.getLogger("flowlearn.modelstream")

H_VERSION = "flowlearn.version"
H_ID = "flowlearn.id"
H_CHUNK = "flowlearn.chunk"
H_CHUNKS = "flowlearn.chunks"
H_SHA = "flowlearn.sha256"
H_META = "flowlearn.meta"

_MAX_PENDING = 256
_MAX_OUTCOMES = 4096


def _kafka():
    try:
        import confluent_kafka
        import confluent_kafka.admin  # noqa: F401
    except ImportError:
        raise ImportError("KafkaModelStore needs confluent-kafka: pip install 'flowlearn[kafka]'") from None
    return confluent_kafka


# --------------------------------------------------------------------------------------------
# tar (de)serialization of a version directory

def _stage_files(model: Any) -> dict[str, bytes]:
    """The files persist writes for ``model``, by relative path."""
    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="flowlearn-kafka-") as d:
        root = os.path.join(d, "stage")
        write_stage_files(model, LocalFileSystem(), root)
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                with open(full, "rb") as f:
                    out[rel] = f.read()
    return out


def _tar(files: dict[str, bytes], mtime: float) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in sorted(files):
            data = files[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(mtime)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _untar_into(payload: bytes, dest: str, where: str) -> None:
    """Extract regular files only, refusing absolute paths, '..', links and devices."""
    try:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:") as tf:
            for m in tf:
                if m.isdir():
                    continue
                parts = PurePosixPath(m.name).parts
                if not m.isfile() or not parts or m.name.startswith("/") or ".." in parts:
                    raise CorruptVersionError(f"{where}: refusing tar member {m.name!r}")
                target = os.path.join(dest, *parts)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                src = tf.extractfile(m)
                assert src is not None
                with open(target, "wb") as f:
                    f.write(src.read())
    except tarfile.TarError as e:
        raise CorruptVersionError(f"{where}: the payload is not a valid tar ({e})") from None


# --------------------------------------------------------------------------------------------
# The log reader: reassembles chunks and applies the acceptance rule

@dataclass
class _Entry:
    version: int
    publish_id: str
    created_at: float
    cls: str | None
    metadata: dict
    sha256: str
    first_offset: int
    last_offset: int
    chunks: int


@dataclass
class _Pending:
    version: int
    sha256: str
    total: int
    first_offset: int
    parts: dict[int, bytes] = field(default_factory=dict)
    meta: dict | None = None


def _headers(msg: Any) -> dict[str, bytes]:
    return {k: v for k, v in (msg.headers() or []) if v is not None}


class _KafkaLog:
    """One consumer over partition ``partition`` of ``topic`` and the versions it has seen."""

    def __init__(self, store: "KafkaModelStore") -> None:
        ck = _kafka()
        self._store = store
        self._tp = ck.TopicPartition(store.topic, store.partition)
        self._consumer = ck.Consumer(store._consumer_conf())
        lo, _hi = self._consumer.get_watermark_offsets(self._tp, timeout=store.timeout, cached=False)
        # An explicit offset, not OFFSET_BEGINNING: no offset lookup round trip.
        self._consumer.assign([ck.TopicPartition(store.topic, store.partition, max(lo, 0))])
        self.position = max(lo, 0)
        self.max_claimed = 0
        self.pending: dict[str, _Pending] = {}
        self.index: OrderedDict[int, _Entry] = OrderedDict()   # accepted versions, ascending
        self.corrupt: dict[int, str] = {}
        self.outcomes: OrderedDict[str, int | None] = OrderedDict()
        self._payloads: OrderedDict[int, bytes] = OrderedDict()

    def close(self) -> None:
        try:
            self._consumer.close()
        except Exception:  # noqa: BLE001 - closing twice or after a broker failure
            pass

    def next_version(self) -> int:
        pend = max((p.version for p in self.pending.values()), default=0)
        return max(self.max_claimed, pend) + 1

    # ---- consuming
    def poll(self, timeout: float) -> list[int]:
        """Consume what is available (waiting up to ``timeout``); the newly accepted versions."""
        new: list[int] = []
        # poll() returns as soon as one message is there (consume() would wait out the timeout
        # unless the batch fills); then drain what is already fetched without waiting.
        first = self._consumer.poll(timeout)
        if first is None:
            return new
        for m in [first, *self._consumer.consume(num_messages=1000, timeout=0)]:
            v = self._handle(m)
            if v is not None:
                new.append(v)
        return new

    def catch_up(self, timeout: float) -> list[int]:
        """Consume up to the partition end as of now."""
        _lo, hi = self._consumer.get_watermark_offsets(self._tp, timeout=timeout, cached=False)
        deadline = time.monotonic() + timeout
        new = []
        # tansu's ListOffsets answer stops at the base offset of the last record batch + 1; the
        # high watermark of the fetch responses (cached) is exact, so read up to the larger one
        while True:
            hi = max(hi, self._consumer.get_watermark_offsets(self._tp, cached=True)[1])
            if self.position >= hi:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"KafkaModelStore({self._store.topic!r}): reading to the end of the topic "
                                   f"(offset {hi}) timed out at offset {self.position} after {timeout}s")
            new += self.poll(0.1)
        new += self.poll(0)   # whatever is already fetched beyond the reported end
        return new

    def wait_outcome(self, pid: str, timeout: float) -> int | None:
        """Read on until publish ``pid`` has completed; the version it was accepted as, or None."""
        deadline = time.monotonic() + timeout
        while pid not in self.outcomes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"KafkaModelStore({self._store.topic!r}): publish {pid} was not read back "
                                   f"within {timeout}s (read up to offset {self.position})")
            self.poll(0.1)
        return self.outcomes[pid]

    def _handle(self, m: Any) -> int | None:
        if m.error():
            logger.warning("KafkaModelStore(%r): consumer error %s", self._store.topic, m.error())
            return None
        self.position = m.offset() + 1
        h = _headers(m)
        if H_ID not in h:
            logger.debug("KafkaModelStore(%r): offset %d is not a model version chunk; ignored",
                         self._store.topic, m.offset())
            return None
        try:
            pid = h[H_ID].decode()
            version, idx, total = int(h[H_VERSION]), int(h[H_CHUNK]), int(h[H_CHUNKS])
            sha = h[H_SHA].decode()
            if not (0 <= idx < total) or version < 1:
                raise ValueError("chunk index or version out of range")
            meta = json.loads(h[H_META]) if H_META in h else None
        except (KeyError, ValueError, UnicodeDecodeError) as e:
            logger.error("KafkaModelStore(%r): malformed model version chunk at offset %d (%s); ignored",
                         self._store.topic, m.offset(), e)
            return None
        if pid in self.outcomes:
            return None            # a duplicate of a chunk of an already completed publish (producer retry)
        p = self.pending.get(pid)
        if p is None:
            p = self.pending[pid] = _Pending(version, sha, total, m.offset())
            if len(self.pending) > _MAX_PENDING:       # forget the oldest torn publish
                oldest = min(self.pending, key=lambda k: self.pending[k].first_offset)
                del self.pending[oldest]
        p.parts[idx] = m.value() or b""
        if meta is not None:
            p.meta = meta
        if len(p.parts) < p.total:
            return None
        del self.pending[pid]
        return self._complete(pid, p, m.offset())

    def _record(self, pid: str, outcome: int | None) -> None:
        self.outcomes[pid] = outcome
        while len(self.outcomes) > _MAX_OUTCOMES:
            self.outcomes.popitem(last=False)

    def _complete(self, pid: str, p: _Pending, last_offset: int) -> int | None:
        topic, v = self._store.topic, p.version
        if v <= self.max_claimed:
            logger.info("KafkaModelStore(%r): publish %s of version %d completed after version %d; a concurrent "
                        "publisher claimed it first, so it is ignored", topic, pid, v, self.max_claimed)
            self._record(pid, None)
            return None
        self.max_claimed = v
        payload = b"".join(p.parts[i] for i in range(p.total))
        if hashlib.sha256(payload).hexdigest() != p.sha256 or not isinstance(p.meta, dict):
            why = "sha256 mismatch" if isinstance(p.meta, dict) else "missing flowlearn.meta header"
            self.corrupt[v] = f"KafkaModelStore({topic!r}) version {v} is corrupt ({why})"
            while len(self.corrupt) > _MAX_OUTCOMES:
                del self.corrupt[next(iter(self.corrupt))]
            logger.error("%s; readers skip it and stay on the previous version", self.corrupt[v])
            self._record(pid, None)
            return None
        meta = p.meta
        self.index[v] = _Entry(v, pid, float(meta.get("created_at", 0.0)), meta.get("class"),
                               dict(meta.get("metadata") or {}), p.sha256, p.first_offset, last_offset, p.total)
        keep = self._store.keep_last
        while keep is not None and len(self.index) > keep:
            old, _ = self.index.popitem(last=False)
            self._payloads.pop(old, None)
        self._payloads[v] = payload
        while len(self._payloads) > 2:
            self._payloads.popitem(last=False)
        self._record(pid, v)
        return v

    # ---- payloads
    def payload(self, v: int) -> bytes:
        data = self._payloads.get(v)
        if data is not None:
            return data
        return self._refetch(self.index[v])

    def _refetch(self, e: _Entry) -> bytes:
        """Read an older version's chunks back from the topic (a short-lived consumer)."""
        ck = _kafka()
        store = self._store
        c = ck.Consumer(store._consumer_conf())
        try:
            c.assign([ck.TopicPartition(store.topic, store.partition, e.first_offset)])
            parts: dict[int, bytes] = {}
            deadline = time.monotonic() + store.timeout
            pos = e.first_offset
            while pos <= e.last_offset:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"KafkaModelStore({store.topic!r}): re-reading version {e.version} "
                                       f"(offsets {e.first_offset}..{e.last_offset}) timed out")
                first = c.poll(0.1)
                for m in ([first, *c.consume(num_messages=1000, timeout=0)] if first is not None else []):
                    if m.error():
                        continue
                    pos = m.offset() + 1
                    h = _headers(m)
                    if m.offset() <= e.last_offset and h.get(H_ID, b"").decode() == e.publish_id:
                        parts[int(h[H_CHUNK])] = m.value() or b""
        finally:
            c.close()
        if len(parts) != e.chunks:
            raise CorruptVersionError(f"KafkaModelStore({store.topic!r}) version {e.version}: only {len(parts)} of "
                                      f"{e.chunks} chunks are still on the topic (its retention removed them?)")
        data = b"".join(parts[i] for i in range(e.chunks))
        if hashlib.sha256(data).hexdigest() != e.sha256:
            raise CorruptVersionError(f"KafkaModelStore({store.topic!r}) version {e.version}: sha256 mismatch")
        return data


def _decode(payload: bytes, version: int, where: str) -> ModelVersion:
    with tempfile.TemporaryDirectory(prefix="flowlearn-kafka-") as d:
        _untar_into(payload, d, where)
        try:
            with open(os.path.join(d, COMMIT_FILE), "rb") as f:
                doc = _parse_commit(f.read(), version)
        except FileNotFoundError:
            doc = None
        if doc is None:
            raise CorruptVersionError(f"{where}: the payload has no valid {COMMIT_FILE}")
        return _load_dir(LocalFileSystem(), d, doc, True, where)


# --------------------------------------------------------------------------------------------

class _KafkaWatcher(Watcher):
    def __init__(self, store: "KafkaModelStore", poll_interval: float, after: int | None, latest_only: bool) -> None:
        super().__init__(poll_interval)
        self._store = store
        self._log: _KafkaLog | None = None
        self._fetch_lock = threading.Lock()
        self._last = after
        self._latest_only = latest_only
        self._corrupt_counted = after or 0     # corrupt publishes up to this version are counted

    def _count_corrupt_publishes(self) -> None:
        """Count the versions whose publish failed its sha256 (they never reach the index)."""
        assert self._log is not None
        for v in [v for v in self._log.corrupt if v > self._corrupt_counted]:
            self._corrupt_counted = v
            self._skipped_corrupt(v, CorruptVersionError(self._log.corrupt[v]))

    def _fetch(self) -> list[ModelVersion]:
        if self._log is None:
            self._log = _KafkaLog(self._store)
            new = self._log.catch_up(self._store.timeout)
            if self._last is None:
                mv = self._newest_valid(list(self._log.index))
                self._last = mv.version if mv is not None else 0
                # corrupt publishes older than the version served first were never candidates
                self._corrupt_counted = max(self._corrupt_counted, self._last)
                self._count_corrupt_publishes()
                return [mv] if mv is not None else []
        else:
            new = []
            deadline = time.monotonic() + self.poll_interval
            while not new and not self._closed.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                new = self._log.poll(min(remaining, 0.05))
        self._count_corrupt_publishes()
        new = [v for v in new if v > (self._last or 0) and v in self._log.index]
        if not new:
            return []
        self._last = new[-1]
        if self._latest_only:
            mv = self._newest_valid(new)
            return [mv] if mv is not None else []
        return [mv for mv in (self._store._try_decode(self._log, v, self._skipped_corrupt) for v in new)
                if mv is not None]

    def _newest_valid(self, vs: list[int]) -> ModelVersion | None:
        assert self._log is not None
        for v in reversed(vs):
            mv = self._store._try_decode(self._log, v, self._skipped_corrupt)
            if mv is not None:
                return mv
        return None

    def _close_resources(self) -> None:
        # Never close the consumer while the iterating thread is inside a poll.
        if self._fetch_lock.acquire(timeout=self._store.timeout):
            try:
                if self._log is not None:
                    self._log.close()
                    self._log = None
            finally:
                self._fetch_lock.release()

    def __next__(self) -> ModelVersion:
        while True:
            if self._closed.is_set():
                raise StopIteration
            if self._queue:
                return self._queue.popleft()
            with self._fetch_lock:
                if self._closed.is_set():
                    raise StopIteration
                try:
                    self._queue.extend(self._fetch())
                    continue
                except Exception:  # noqa: BLE001 - a watcher must survive broker hiccups
                    logger.exception("KafkaModelStore(%r) watcher: polling failed; retrying in %.3fs",
                                     self._store.topic, self.poll_interval)
            self._closed.wait(self.poll_interval)


class KafkaModelStore:
    """A versioned model stream on a Kafka topic (see the module docstring for the format).

    Same API as :class:`ModelStore`: ``publish``, ``versions``, ``latest``, ``load``,
    ``watch``, ``rollback``, ``version_info``, ``verify``. ``config`` adds librdkafka settings
    (security, ...) to the producer and consumers.
    """

    def __init__(self, topic: str, bootstrap_servers: str, keep_last: int | None = None, *,
                 chunk_size: int = 512 * 1024, partition: int = 0, create_topic: bool = True,
                 timeout: float = 30.0, config: dict | None = None) -> None:
        if keep_last is not None and (isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1):
            raise ValueError(f"KafkaModelStore: parameter 'keep_last' = {keep_last!r} violates gt_eq(1): it must be "
                             f"an integer greater than or equal to 1 (or None to keep every version).")
        if not isinstance(chunk_size, int) or not (1024 <= chunk_size <= 900_000):
            raise ValueError(f"KafkaModelStore: parameter 'chunk_size' = {chunk_size!r} violates "
                             f"in_range(1024, 900000): it must be in [1024, 900000] bytes (Kafka's default "
                             f"message limit is 1 MB).")
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.keep_last = keep_last
        self.chunk_size = chunk_size
        self.partition = partition
        self.timeout = float(timeout)
        self.url = f"kafka://{bootstrap_servers}/{topic}"
        self._config = dict(config or {})
        self._lock = threading.RLock()
        self._producer: Any = None
        self._reported: set[int] = set()
        if create_topic:
            self._ensure_topic()
        self._log = _KafkaLog(self)

    def __repr__(self) -> str:
        return f"KafkaModelStore({self.topic!r}, {self.bootstrap_servers!r}, keep_last={self.keep_last!r})"

    # ---- clients
    def __reduce__(self) -> tuple:
        # a copy in another process (a Flink task manager) connects afresh; the topic exists by now
        return (functools.partial(KafkaModelStore, chunk_size=self.chunk_size, partition=self.partition,
                                  create_topic=False, timeout=self.timeout, config=self._config),
                (self.topic, self.bootstrap_servers, self.keep_last))

    def _base_conf(self) -> dict:
        return {"bootstrap.servers": self.bootstrap_servers, **self._config}

    def _consumer_conf(self) -> dict:
        return {**self._base_conf(), "group.id": f"flowlearn-modelstore-{uuid.uuid4().hex}",
                "enable.auto.commit": False, "enable.auto.offset.store": False,
                "fetch.wait.max.ms": 10, "fetch.error.backoff.ms": 10}

    def _ensure_topic(self) -> None:
        ck = _kafka()
        admin = ck.admin.AdminClient(self._base_conf())
        fut = admin.create_topics([ck.admin.NewTopic(self.topic, num_partitions=1, replication_factor=-1)],
                                  request_timeout=self.timeout)[self.topic]
        try:
            fut.result(self.timeout)
        except ck.KafkaException as e:
            err = e.args[0] if e.args else None
            if getattr(err, "code", lambda: None)() != ck.KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        md = admin.list_topics(topic=self.topic, timeout=self.timeout)
        t = md.topics.get(self.topic)
        if t is None or self.partition not in t.partitions:
            raise ValueError(f"KafkaModelStore: topic {self.topic!r} has no partition {self.partition}")

    def _get_producer(self) -> Any:
        if self._producer is None:
            ck = _kafka()
            self._producer = ck.Producer({**self._base_conf(), "acks": "all", "linger.ms": 0,
                                          "enable.idempotence": True,
                                          "batch.num.messages": 1,
                                          "message.max.bytes": max(1_000_000, self.chunk_size + 64 * 1024)})
        return self._producer

    def close(self) -> None:
        """Close the store's consumer and flush its producer."""
        with self._lock:
            if self._producer is not None:
                self._producer.flush(self.timeout)
                self._producer = None
            self._log.close()

    def __enter__(self) -> "KafkaModelStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- reading
    def _refresh(self) -> None:
        self._log.catch_up(self.timeout)

    def versions(self) -> list[int]:
        """Accepted, intact version numbers (the newest ``keep_last``), ascending."""
        with self._lock:
            self._refresh()
            return list(self._log.index)

    def latest_version(self) -> int | None:
        vs = self.versions()
        return vs[-1] if vs else None

    def _resolve(self, version: int | None) -> int:
        vs = self.versions()
        if version is None:
            if not vs:
                raise LookupError(f"{self.url}: the model store has no committed version")
            return vs[-1]
        if version in self._log.corrupt:
            raise CorruptVersionError(self._log.corrupt[version])
        if version not in vs:
            raise LookupError(f"{self.url}: no committed version {version}; committed versions: {_summarize(vs)}")
        return version

    def version_info(self, version: int | None = None) -> dict:
        with self._lock:
            v = self._resolve(version)
            e = self._log.index[v]
            return {"version": v, "created_at": e.created_at, "class": e.cls, "metadata": dict(e.metadata),
                    "chunks": e.chunks, "offsets": [e.first_offset, e.last_offset], "sha256": e.sha256}

    def _decode(self, log: _KafkaLog, v: int) -> ModelVersion:
        return _decode(log.payload(v), v, f"{self.url} version {v}")

    def _try_decode(self, log: _KafkaLog, v: int,
                    on_corrupt: Callable[[int, Exception], Any] | None = None) -> ModelVersion | None:
        try:
            return self._decode(log, v)
        except CorruptVersionError as e:
            first = v not in self._reported
            self._reported.add(v)
            (logger.error if first else logger.debug)("%s; readers skip it and stay on the previous version", e)
            if on_corrupt is not None:
                on_corrupt(v, e)
        except (KeyError, TimeoutError) as e:
            logger.warning("%s: version %d could not be read (%s)", self.url, v, e)
        return None

    def verify(self, version: int) -> None:
        self.load(version)

    def load(self, version: int | None = None) -> ModelVersion:
        """Load ``version``, or (``None``) the newest valid one, skipping corrupt versions with a logged error."""
        with self._lock:
            if version is None:
                mv = self.latest()
                if mv is None:
                    raise LookupError(f"{self.url}: the model store has no valid version")
                return mv
            v = self._resolve(version)
            try:
                return self._decode(self._log, v)
            except CorruptVersionError as e:
                if v not in self._reported:
                    self._reported.add(v)
                    logger.error("%s; readers skip it and stay on the previous version", e)
                raise

    def latest(self) -> ModelVersion | None:
        """The newest valid version, or None."""
        with self._lock:
            for v in reversed(self.versions()):
                mv = self._try_decode(self._log, v)
                if mv is not None:
                    return mv
            return None

    # ---- publishing
    def publish(self, model: Any, metadata: dict | None = None) -> int:
        """Add ``model`` as the next version (strictly increasing across publishers); returns its number."""
        metadata = _check_publishable(model, metadata)
        created_at = time.time()
        cls_name = _stage_class_name(model)
        files = _stage_files(model)
        checksums = {k: hashlib.sha256(b).hexdigest() for k, b in files.items()}
        with self._lock:
            self._refresh()
            for _attempt in range(100):
                v = self._log.next_version()
                doc = _commit_doc(v, created_at, metadata, cls_name, checksums)
                payload = _tar({**files, COMMIT_FILE: json.dumps(doc, indent=1, sort_keys=True).encode()},
                               created_at)
                pid = uuid.uuid4().hex
                self._produce(pid, v, payload, {"created_at": created_at, "class": cls_name, "metadata": metadata})
                if self._log.wait_outcome(pid, self.timeout) == v:
                    logger.info("%s: published version %d (%s, %d bytes)", self.url, v, cls_name, len(payload))
                    return v
                logger.info("%s: version %d was claimed by a concurrent publisher; retrying", self.url, v)
            raise RuntimeError(f"{self.url}: could not claim a version number after 100 attempts")

    def _produce(self, pid: str, v: int, payload: bytes, meta: dict) -> None:
        producer = self._get_producer()
        sha = hashlib.sha256(payload).hexdigest()
        chunks = [payload[i:i + self.chunk_size] for i in range(0, len(payload), self.chunk_size)] or [b""]
        offsets: list[int] = []
        errors: list[Any] = []

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(err)
            else:
                offsets.append(msg.offset())

        for i, chunk in enumerate(chunks):
            headers = [(H_VERSION, str(v).encode()), (H_ID, pid.encode()), (H_CHUNK, str(i).encode()),
                       (H_CHUNKS, str(len(chunks)).encode()), (H_SHA, sha.encode())]
            if i == 0:
                headers.append((H_META, json.dumps(meta, sort_keys=True).encode()))
            while True:
                try:
                    producer.produce(self.topic, value=chunk, key=pid.encode(), partition=self.partition,
                                     headers=headers, on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
        remaining = producer.flush(self.timeout)
        if errors or remaining or len(offsets) != len(chunks):
            raise RuntimeError(f"{self.url}: publishing version {v} failed: "
                               f"{errors[0] if errors else f'{remaining} chunks undelivered after {self.timeout}s'}")

    def rollback(self, to_version: int, metadata: dict | None = None) -> int:
        """Republish version ``to_version`` as a new version (metadata gets ``rollback_of``)."""
        old = self.load(to_version)
        md = dict(old.metadata)
        md.pop("rollback_of", None)
        md.update(metadata or {})
        md["rollback_of"] = old.version
        return self.publish(old.model, md)

    # ---- following
    def watch(self, poll_interval: float = 0.2, *, after: int | None = None, latest_only: bool = False,
              notify: bool = True, notify_interval: float = 0.005,
              callback: Callable[[ModelVersion], Any] | None = None) -> Watcher:
        """Follow new versions (own consumer; Kafka delivers new messages within milliseconds, so
        ``notify``/``notify_interval`` are accepted for API compatibility and ignored)."""
        w = _KafkaWatcher(self, poll_interval, after, latest_only)
        if callback is not None:
            w._start_callback(callback, name=f"flowlearn-watch-kafka-{self.topic}")
        return w
