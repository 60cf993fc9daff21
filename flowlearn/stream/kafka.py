"""Kafka source and sink on ``confluent-kafka``.

Source: the partitions of the topic are *assigned* explicitly (no group rebalancing: the
job owns its partitions and its offsets). The next offset of every partition is checkpointed;
on restart the job resumes exactly there. After each completed checkpoint the offsets are also
committed to ``group_id``, so ``start="committed"`` lets a new job continue where an old one
stopped. Payloads (``json`` objects or ``csv`` lines, one per message) are parsed in one
vectorized call per poll; a bad message raises an error naming topic, partition, offset and
column, or with ``handle_invalid="skip"`` goes to ``stream.dead_letters()``. The consumer
reads with ``isolation.level=read_committed``.

Sink: with checkpoints, writes go into one Kafka transaction per checkpoint interval
(``transactional.id`` derived from the sink's uid and topic, stable across restarts). The
checkpoint's pre-commit flushes the producer and records the last offset written to each
partition; once the checkpoint is durable the transaction commits. After a crash between the
two, the restarted job checks with a ``read_committed`` consumer whether that transaction
committed: if so the newer checkpoint is adopted, otherwise the job falls back to the previous
one (the restarted producer has aborted the open transaction). So ``read_committed`` readers
see every row exactly once. Without a checkpoint directory, or with ``transactional=False``,
the sink is at-least-once: after a crash, the rows written since the last checkpoint are
written again. On restart the sink compares the partitions' end offsets with those recorded in
the checkpoint and counts these rewritten rows in the metric ``duplicates`` (exact when the job
is the topic's only writer); they are bounded by one checkpoint interval.

Example:
    >>> import flowlearn.stream as fls                                          # doctest: +SKIP
    >>> s = fls.from_kafka("in", "127.0.0.1:9092", schema="x double", start="earliest")  # doctest: +SKIP
    >>> fl.run(s.to_kafka("out", "127.0.0.1:9092"), checkpoint_dir="/tmp/chk")  # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import io
import logging
import time
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from flowlearn.stream.core import Sink, Stream
from flowlearn.stream.operator import Operator, OperatorState
from flowlearn.stream.plan import Spec, register_operator
from flowlearn.stream.parsing import dead_letter_table, parse_buffer, parse_records
from flowlearn.stream.source import Source

__all__ = ["KafkaSource", "KafkaSink", "output_schema", "check_kafka_args", "end_offsets", "parse_messages", "messages"]

log = logging.getLogger(__name__)

_RECOVER_TIMEOUT = 60.0   # seconds a restarted sink waits to read back what the crashed run wrote

_META = {"key": pa.binary(), "topic": pa.string(), "partition": pa.int32(), "offset": pa.int64(),
         "timestamp": pa.timestamp("ms")}


def output_schema(schema: pa.Schema, meta: list[str]) -> pa.Schema:
    out = schema
    for m in meta:
        out = out.append(pa.field(m, _META[m]))
    return out


def check_kafka_args(format: str, start: Any, meta: list[str], handle_invalid: str) -> None:
    if format not in ("json", "csv"):
        raise ValueError(f"from_kafka: format must be 'json' or 'csv', got {format!r}")
    if not (start in ("earliest", "latest", "committed") or isinstance(start, (int, float))):
        raise ValueError(f"from_kafka: start must be 'earliest', 'latest', 'committed' or a timestamp in seconds, "
                         f"got {start!r}")
    bad = [m for m in meta if m not in _META]
    if bad:
        raise ValueError(f"from_kafka: unknown metadata column(s) {bad}; choose from {sorted(_META)}")
    if handle_invalid not in ("error", "skip"):
        raise ValueError(f"from_kafka: handle_invalid must be 'error' or 'skip', got {handle_invalid!r}")


def _kafka():
    try:
        import confluent_kafka
    except ImportError:
        raise ImportError("Kafka sources and sinks need confluent-kafka: pip install 'flowlearn[kafka]'") from None
    return confluent_kafka


def end_offsets(conf: dict, topic: str, partitions: list[int], timeout: float = 30.0) -> dict[int, int]:
    """The end offset of each partition (the offset the next message will get), as of now.

    The broker's ``ListOffsets`` answer (``get_watermark_offsets``) is only trusted as a lower
    bound: tansu (the test broker) answers with the base offset of the partition's last record
    batch + 1, short of the real end by the rest of that batch. The high watermark in fetch
    responses is exact, so a short-lived consumer (config ``conf``; ``group.id`` is not used)
    fetches once from just below the listed end of every non-empty partition, and the larger of
    the two is taken. Only if no fetch response arrives within ``timeout`` seconds is the listed
    end kept (with a warning)."""
    ck = _kafka()
    c = ck.Consumer({"group.id": "flowlearn-end-offsets", **conf, "enable.auto.commit": False,
                     "enable.partition.eof": False})
    try:
        ends = {p: c.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10, cached=False)[1]
                for p in partitions}
        todo = [p for p in partitions if ends[p] > 0]     # an empty partition lists 0 on every broker
        if todo:
            c.assign([ck.TopicPartition(topic, p, ends[p] - 1) for p in todo])
            deadline = time.monotonic() + timeout
            while todo and time.monotonic() < deadline:
                c.consume(num_messages=10000, timeout=0.01)   # fetches; the messages are not needed
                for p in list(todo):
                    hi = c.get_watermark_offsets(ck.TopicPartition(topic, p), cached=True)[1]
                    if hi >= 0:
                        ends[p] = max(ends[p], hi)
                        todo.remove(p)
        if todo:
            log.warning("end offsets of %s partitions %s: no fetch response within %.0fs; using the broker's "
                        "listed offsets %s", topic, todo, timeout, {p: ends[p] for p in todo})
        return ends
    finally:
        c.close()


def parse_messages(values: list[bytes], fmt: str, schema: pa.Schema) -> tuple[pa.Table, list[tuple[int, str, str]]]:
    """Parse message payloads: the table of the good ones (one row each, in order) and
    ``[(index, column, reason)]`` for the bad ones. One vectorized parse of all payloads; when it
    fails, or a payload is blank or holds a line break (it could yield no row or several, and
    shift every row after it onto the wrong message), the payloads are bisected
    (:func:`flowlearn.stream.parsing.parse_records`), where each must give exactly one row."""
    if not any(not v.strip() or b"\n" in v or b"\r" in v for v in values):
        try:
            t = parse_buffer(b"\n".join(values) + b"\n", fmt, schema)
            if t.num_rows == len(values):
                return t, []
        except ValueError:
            pass
    return parse_records(values, fmt, schema)


class KafkaSource(Source):
    def __init__(self, topic: str, bootstrap_servers: str, group_id: str, format: str, schema: pa.Schema,
                 start: Any, meta: list[str], handle_invalid: str, stop_at_end: bool, config: dict | None) -> None:
        super().__init__()
        self.topic, self.bootstrap, self.group_id, self.format = topic, bootstrap_servers, group_id, format
        self.schema, self.start, self.meta, self.handle_invalid = schema, start, meta, handle_invalid
        self.stop_at_end, self.config = stop_at_end, config or {}
        self.bounded = stop_at_end
        self.offsets: dict[int, int] = {}
        self.end: dict[int, int] = {}
        self._consumer: Any = None
        self._restored = False
        self._assigned = False
        self._ends_now: dict[int, int] | None = None
        self._start_ms = int(float(start) * 1000) if isinstance(start, (int, float)) else None

    def open(self, ctx: Any) -> None:
        super().open(ctx)
        ck = _kafka()
        conf = {"bootstrap.servers": self.bootstrap, "group.id": self.group_id, "enable.auto.commit": False,
                "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                "enable.partition.eof": False, **self.config}
        self._conf = conf
        self._consumer = ck.Consumer(conf)
        md = self._consumer.list_topics(self.topic, timeout=15)
        tmd = md.topics.get(self.topic)
        if tmd is None or tmd.error is not None or not tmd.partitions:
            raise ValueError(f"from_kafka: topic {self.topic!r} does not exist on {self.bootstrap} "
                             f"({tmd.error if tmd is not None else 'not listed'})")
        self.partitions = sorted(tmd.partitions)

    def _ends(self) -> dict[int, int]:
        if self._ends_now is None:
            self._ends_now = end_offsets(self._conf, self.topic, self.partitions)
        return self._ends_now

    def _start_offsets(self) -> dict[int, int]:
        ck = _kafka()
        tps = [ck.TopicPartition(self.topic, p) for p in self.partitions]
        low = {p: self._consumer.get_watermark_offsets(ck.TopicPartition(self.topic, p), timeout=10)[0]
               for p in self.partitions}
        if self.start == "earliest":
            return low
        if self.start == "latest":
            return dict(self._ends())
        if self.start == "committed":
            got = self._consumer.committed(tps, timeout=10)
            return {tp.partition: (tp.offset if tp.offset >= 0 else low[tp.partition]) for tp in got}
        ms = int(float(self.start) * 1000)
        got = self._consumer.offsets_for_times([ck.TopicPartition(self.topic, p, ms) for p in self.partitions],
                                               timeout=10)
        return {tp.partition: (tp.offset if tp.offset >= 0 else self._ends()[tp.partition]) for tp in got}

    def _assign(self) -> None:
        ck = _kafka()
        self._ends_now = None
        if not self._restored:
            self.offsets = self._start_offsets()
        if self.stop_at_end:
            self.end = dict(self._ends())
        self._consumer.assign([ck.TopicPartition(self.topic, p, self.offsets[p]) for p in self.partitions])
        self._assigned = True

    def poll(self, max_rows: int) -> list[pa.Table]:
        if not self._assigned:
            self._assign()
        if self.finished():
            return []
        msgs = self._consumer.consume(num_messages=max(1, min(max_rows, 20000)), timeout=0.05)
        if not msgs:
            return []
        ck = _kafka()
        values, parts, offs, keys, tss = [], [], [], [], []
        offsets, start_ms = self.offsets, self._start_ms
        for m in msgs:  # the client hands out one object per message; parsing below is vectorized
            err = m.error()
            if err is not None:
                if err.code() == ck.KafkaError._PARTITION_EOF:
                    continue
                raise ck.KafkaException(err)
            offsets[m.partition()] = m.offset() + 1
            if start_ms is not None and m.timestamp()[1] < start_ms:
                continue  # before the requested start time (brokers may seek imprecisely)
            values.append(m.value() or b"")
            parts.append(m.partition())
            offs.append(m.offset())
            if self.meta:
                keys.append(m.key())
                tss.append(m.timestamp()[1])
        if not values:
            return []
        pa_parts, pa_offs = np.asarray(parts, np.int32), np.asarray(offs, np.int64)
        keep = None
        t, bad = parse_messages(values, self.format, self.schema)
        if bad:
            i, col, reason = bad[0]
            if self.handle_invalid == "error":
                raise ValueError(f"topic {self.topic}, partition {parts[i]}, offset {offs[i]}, column '{col}': "
                                 f"{reason} (message {values[i][:200]!r}); pass handle_invalid='skip' to route "
                                 f"bad messages to the dead-letter sink") from None
            self.ctx.side("dead_letter", dead_letter_table(
                f"kafka topic {self.topic}", [f"partition {parts[j]}, offset {offs[j]}" for j, _, _ in bad],
                [c for _, c, _ in bad], [r for _, _, r in bad],
                [values[j].decode("utf-8", "replace") for j, _, _ in bad]))
            keep = np.ones(len(values), bool)
            keep[[j for j, _, _ in bad]] = False
        if self.meta:
            cols = {"key": pa.array(keys, pa.binary()), "topic": pa.array([self.topic] * len(values), pa.string()),
                    "partition": pa.array(pa_parts), "offset": pa.array(pa_offs),
                    "timestamp": pa.array(np.asarray(tss, np.int64)).cast(pa.timestamp("ms"))}
            for m in self.meta:
                col = cols[m] if keep is None else cols[m].filter(pa.array(keep))
                t = t.append_column(m, col)
        return [t]

    def finished(self) -> bool:
        if not self.stop_at_end or not self._assigned:
            return False
        if all(self.offsets.get(p, 0) >= e for p, e in self.end.items()):
            return True
        # read_committed: transaction markers occupy offsets no message is returned for
        ck = _kafka()
        pos = self._consumer.position([ck.TopicPartition(self.topic, p) for p in self.partitions])
        for tp in pos:
            if tp.offset >= 0:
                self.offsets[tp.partition] = max(self.offsets.get(tp.partition, 0), tp.offset)
        return all(self.offsets.get(p, 0) >= e for p, e in self.end.items())

    def lag(self) -> int | None:
        if self._consumer is None:
            return None
        ck = _kafka()
        total = 0
        for p in self.partitions:
            tp = ck.TopicPartition(self.topic, p)
            # the listed end can fall short (see end_offsets); the last fetch response's is exact
            hi = max(self._consumer.get_watermark_offsets(tp, timeout=1, cached=False)[1],
                     self._consumer.get_watermark_offsets(tp, cached=True)[1])
            total += max(0, hi - self.offsets.get(p, hi))
        return total

    def snapshot_state(self) -> OperatorState:
        return OperatorState({"topic": self.topic, "offsets": {str(p): o for p, o in self.offsets.items()}})

    def restore_state(self, state: OperatorState) -> None:
        if state.data.get("topic") != self.topic:
            raise ValueError(f"checkpoint holds offsets of topic {state.data.get('topic')!r}, this source reads "
                             f"{self.topic!r}")
        self.offsets = {int(p): int(o) for p, o in state.data["offsets"].items()}
        for p in self.partitions:
            self.offsets.setdefault(p, 0)
        self._restored = True

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        ck = _kafka()
        try:
            self._consumer.commit(offsets=[ck.TopicPartition(self.topic, p, o) for p, o in self.offsets.items()],
                                  asynchronous=True)
        except ck.KafkaException as e:  # the checkpoint is the source of truth; the group commit is a courtesy
            log.warning("committing offsets of %s to group %s failed: %s", self.topic, self.group_id, e)

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


def _serialize(t: pa.Table, fmt: str) -> list[bytes]:
    """One message per row: a CSV line, or a JSON object (vectors in the codec's JSON forms)."""
    if fmt == "csv":
        from flowlearn.data.io import _rows_as_text

        text = _rows_as_text(t)
        buf = io.BytesIO()
        pacsv.write_csv(text, buf, write_options=pacsv.WriteOptions(include_header=False))
        data = buf.getvalue()
        if b"\r" in data or data.count(b"\n") != t.num_rows:  # a value holds a line break: it would split its row
            for name in text.column_names:
                col = text.column(name)
                if pa.types.is_string(col.type):
                    hit = pc.match_substring_regex(col, "[\r\n]").fill_null(False)
                    if pc.any(hit).as_py():
                        row = int(np.flatnonzero(np.asarray(hit))[0])
                        raise ValueError(f"to_kafka(format='csv'): row {row}, column '{name}' holds a line break; a "
                                         f"CSV message is one line: use format='json'")
        return data.split(b"\n")[:t.num_rows]
    from flowlearn.data.io import _json_lines

    return [line[:-1] for line in _json_lines(t)]


def messages(t: pa.Table, fmt: str, key_col: str | None) -> tuple[list[bytes | None] | None, list[bytes]]:
    """The keys (None without ``key_col``; a null key stays None) and values of ``t``'s rows as
    ``to_kafka`` writes them: a CSV message leaves the key column out, a JSON one keeps it."""
    payload = t.drop_columns([key_col]) if key_col and fmt == "csv" else t
    keys = [None if k is None else str(k).encode() for k in t.column(key_col).to_pylist()] if key_col else None
    return keys, _serialize(payload, fmt)


class _KafkaSinkOp(Operator):
    def __init__(self, topic: str, bootstrap: str, format: str, key_col: str | None, transactional: bool,
                 config: dict | None, transactional_id: str | None) -> None:
        super().__init__()
        self.topic, self.bootstrap, self.format, self.key_col = topic, bootstrap, format, key_col
        self.transactional, self.config, self.transactional_id = transactional, config or {}, transactional_id
        self._p: Any = None
        self._last: dict[int, int] = {}
        self._high: dict[int, int] = {}
        self._errors: list[Any] = []
        self._rows_since_checkpoint = 0
        self._txn = False

    def open(self, ctx: Any) -> None:
        super().open(ctx)
        ck = _kafka()
        self.transactional = self.transactional and ctx.checkpointing
        conf = {"bootstrap.servers": self.bootstrap, "linger.ms": 10, "queue.buffering.max.messages": 1_000_000,
                "batch.num.messages": 10000, **self.config}
        if self.transactional:
            conf["transactional.id"] = self.transactional_id or f"flowlearn-{ctx.uid}-{self.topic}"
        self._p = ck.Producer(conf)
        if self.transactional:
            self._p.init_transactions(30)  # fences and aborts a transaction left open by a crashed run
            self._p.begin_transaction()
            self._txn = True

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._errors.append(err)
        else:
            self._last[msg.partition()] = msg.offset()
            self._high[msg.partition()] = msg.offset() + 1

    def process(self, table: pa.Table, input_index: int = 0) -> list[pa.Table]:
        if table.num_rows == 0:
            return []
        keys, values = messages(table, self.format, self.key_col)
        produce, cb, topic = self._p.produce, self._on_delivery, self.topic
        for i, v in enumerate(values):
            while True:
                try:
                    produce(topic, v, keys[i] if keys is not None else None, on_delivery=cb)
                    break
                except BufferError:
                    self._p.poll(0.05)
        self._p.poll(0)
        self._rows_since_checkpoint += len(values)
        self.ctx.count("messages_produced", len(values))
        return []

    def _flush(self) -> None:
        left = self._p.flush(60)
        if left:
            raise RuntimeError(f"to_kafka({self.topic}): {left} messages still undelivered after 60s")
        if self._errors:
            raise RuntimeError(f"to_kafka({self.topic}): delivery failed: {self._errors[0]}")

    def snapshot_state(self) -> OperatorState:
        self._flush()
        state = {"transactional": self.transactional, "txn_last_offsets": {str(p): o for p, o in self._last.items()},
                 "end_offsets": {**self._end_offsets(skip=set(self._high)),
                                 **{str(p): o for p, o in self._high.items()}}}
        self._rows_since_checkpoint = 0
        return OperatorState(state)

    def _end_offsets(self, skip: set[int] = frozenset()) -> dict[str, int]:
        """End offsets (``read_uncommitted``) of the topic's partitions, except ``skip`` (known already)."""
        ck = _kafka()
        conf = {"bootstrap.servers": self.bootstrap, "group.id": f"flowlearn-sink-{self.ctx.uid}",
                "isolation.level": "read_uncommitted"}
        c = ck.Consumer(conf)
        try:
            parts = sorted(c.list_topics(self.topic, timeout=10).topics[self.topic].partitions)
        finally:
            c.close()
        todo = [p for p in parts if p not in skip]
        return {str(p): o for p, o in end_offsets(conf, self.topic, todo).items()} if todo else {}

    def notify_checkpoint_complete(self, checkpoint_id: int) -> None:
        if self.transactional:
            self._p.commit_transaction(60)
            self._p.begin_transaction()
        self._last = {}

    def restore_state(self, state: OperatorState) -> None:
        """Count the rows written after the restored checkpoint that readers can see: they are
        written again (an aborted transaction hides them, so with working transactions this is 0)."""
        before = {int(p): int(o) for p, o in (state.data.get("end_offsets") or {}).items()}
        self._high = dict(before)
        if not before:
            return
        now = {int(p): o for p, o in self._end_offsets().items()}
        ranges = {p: (o, now.get(p, o)) for p, o in before.items() if now.get(p, o) > o}
        if not ranges:
            return
        ck = _kafka()
        c = ck.Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"flowlearn-recover-{self.ctx.uid}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
        dup = 0
        try:
            c.assign([ck.TopicPartition(self.topic, p, lo) for p, (lo, _) in ranges.items()])
            open_parts = dict(ranges)
            # generous: the count must be exact, and a loaded broker or machine can be slow to deliver
            deadline = time.monotonic() + _RECOVER_TIMEOUT
            while open_parts and time.monotonic() < deadline:
                msgs = c.consume(10000, 0.3)
                if not msgs:
                    pos = c.position([ck.TopicPartition(self.topic, p) for p in open_parts])
                    for tp in pos:
                        if tp.offset >= open_parts[tp.partition][1]:
                            open_parts.pop(tp.partition)
                    if not pos:
                        break
                    continue
                for m in msgs:
                    if m.error() is None and m.partition() in ranges and m.offset() < ranges[m.partition()][1]:
                        dup += 1
                        if m.offset() + 1 >= ranges[m.partition()][1]:
                            open_parts.pop(m.partition(), None)
        finally:
            c.close()
        if open_parts:
            log.warning("to_kafka(%s): counting the rows written after the restored checkpoint timed out after "
                        "%.0fs; the duplicates metric (%d) may be too low", self.topic, _RECOVER_TIMEOUT, dup)
        self.ctx.count("duplicates", dup)
        if dup:
            log.warning("to_kafka(%s): %d rows written after the restored checkpoint are visible and will be "
                        "written again (duplicates; bounded by one checkpoint interval)", self.topic, dup)

    def recover_commit(self, state: OperatorState) -> bool:
        last = {int(p): int(o) for p, o in state.data.get("txn_last_offsets", {}).items()}
        if not state.data.get("transactional") or not last:
            return True
        ck = _kafka()
        c = ck.Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"flowlearn-recover-{self.ctx.uid}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
        try:
            c.assign([ck.TopicPartition(self.topic, p, o) for p, o in last.items()])
            pending = dict(last)
            deadline = time.monotonic() + _RECOVER_TIMEOUT
            while pending and time.monotonic() < deadline:
                msgs = c.consume(100, 0.2)
                for m in msgs:
                    if m.error() is None and m.partition() in pending:
                        if m.offset() != pending.pop(m.partition()):
                            return False  # the transaction's last record is not visible: it was aborted
                if not msgs and pending:
                    for tp in c.position([ck.TopicPartition(self.topic, p) for p in pending]):
                        if tp.offset > pending[tp.partition]:
                            return False  # read past it without seeing it: aborted
            return not pending
        finally:
            c.close()

    def on_end(self) -> list[pa.Table]:
        self._flush()
        return []

    def close(self) -> None:
        if self._p is not None:
            if not self.transactional:
                self._p.flush(30)
            self._p = None


class KafkaSink(Sink):
    """Rows as Kafka messages: ``json`` objects or ``csv`` lines; ``key_col`` becomes the key."""

    def __init__(self, stream: Stream, topic: str, bootstrap_servers: str, format: str = "json",
                 key_col: str | None = None, transactional: bool = True, config: dict | None = None,
                 transactional_id: str | None = None) -> None:
        if format not in ("json", "csv"):
            raise ValueError(f"to_kafka: format must be 'json' or 'csv', got {format!r}")
        super().__init__(stream, KafkaSinkSpec(topic, bootstrap_servers, format, key_col, transactional, config,
                                               transactional_id), f"to_kafka({topic})")


@dataclasses.dataclass(frozen=True, eq=False)
class KafkaSourceSpec(Spec):
    """Messages of ``topic`` parsed with ``schema`` (see ``fl.stream.from_kafka``)."""

    topic: str
    bootstrap_servers: str
    group_id: str
    format: str
    schema: pa.Schema
    start: Any
    metadata_columns: tuple[str, ...]
    handle_invalid: str
    stop_at_end: bool
    config: dict | None
    state: ClassVar[str] = "partition offsets"


@dataclasses.dataclass(frozen=True, eq=False)
class KafkaSinkSpec(Spec):
    """Rows as messages of ``topic`` (see ``Stream.to_kafka``)."""

    topic: str
    bootstrap_servers: str
    format: str
    key_col: str | None
    transactional: bool
    config: dict | None
    transactional_id: str | None
    state: ClassVar[str] = "the open transaction"


register_operator(KafkaSourceSpec, lambda s: KafkaSource(s.topic, s.bootstrap_servers, s.group_id, s.format, s.schema,
                                                         s.start, list(s.metadata_columns), s.handle_invalid,
                                                         s.stop_at_end, s.config))
register_operator(KafkaSinkSpec, lambda s: _KafkaSinkOp(s.topic, s.bootstrap_servers, s.format, s.key_col,
                                                        s.transactional, s.config, s.transactional_id))
