"""Streams: a lazy dataflow plan of Arrow batches, sources, sinks, windows, event time and
checkpoints. A batch is a bounded stream: every ``Transformer``/``Model`` runs on a
``Stream`` with the same kernels it runs on a table. See ``docs/streams.md``.

Example:
    >>> import flowlearn.stream as fls
    >>> s = fls.from_table({"x": [1.0, 2.0, 3.0]}, batch_size=2)
    >>> s.map_batches(lambda t: {"y": t["x"]}).to_table().to_pydict()
    {'y': [1.0, 2.0, 3.0]}
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from flowlearn.data.schema import parse_schema
from flowlearn.data.table import table as to_table
from flowlearn.stream.core import Sink, Stream, check_schema
from flowlearn.stream.operator import MAX_WATERMARK, MIN_WATERMARK, Operator, OperatorContext, OperatorState
from flowlearn.stream.plan import current_engine
from flowlearn.stream.source import GenerateSpec, IterableSourceSpec, Source, TableSourceSpec, UserSourceSpec
from flowlearn.stream.models import (
    StreamModel,
    VersionItem,
    fit_online,
    follow,
    from_model_store,
    model_stream,
    read_version,
    version_table,
)

__all__ = [
    "Stream", "Sink", "Operator", "OperatorState", "OperatorContext", "Source", "from_table", "from_iterable",
    "generate", "from_files", "from_kafka", "from_source", "run", "check_schema", "MIN_WATERMARK", "MAX_WATERMARK",
    "from_model_store", "fit_online", "model_stream", "follow", "StreamModel", "VersionItem", "read_version",
    "version_table",
]


def from_source(make: Callable[[], Source], schema: Any = None, bounded: bool = True, name: str = "source") -> Stream:
    """A stream read from a user :class:`Source` (``make`` builds a fresh one per run)."""
    sch = parse_schema(schema) if schema is not None else None
    return Stream(UserSourceSpec(make), [], kind="source", name=name, schema=sch, bounded=bounded)


def from_table(obj: Any, batch_size: int = 65536, schema: Any = None) -> Stream:
    """A bounded stream of the rows of a table (anything ``fl.table`` accepts) in batches of
    ``batch_size`` rows.

    Example:
        >>> from_table({"x": [1, 2, 3]}, batch_size=2).to_table().num_rows
        3
    """
    if batch_size <= 0:
        raise ValueError(f"from_table: batch_size must be > 0, got {batch_size}")
    t = to_table(obj, schema)
    return Stream(TableSourceSpec(t, int(batch_size)), [], kind="source", name="from_table", schema=t.schema,
                  bounded=True)


def from_iterable(items: Iterable[Any] | Callable[[], Iterable[Any]], schema: Any = None,
                  bounded: bool = True) -> Stream:
    """A stream of the items of ``items`` (tables, record batches, dicts of columns, lists of row
    dicts), one batch per item. Pass a list or a factory for jobs that restart from a checkpoint.

    Example:
        >>> from_iterable([{"x": [1]}, {"x": [2, 3]}]).to_table().to_pydict()
        {'x': [1, 2, 3]}
    """
    sch = parse_schema(schema) if schema is not None else None
    return Stream(IterableSourceSpec(items, sch), [], kind="source", name="from_iterable", schema=sch,
                  bounded=bounded)


def generate(fn: Callable[[int], Any], schema: Any = None, count: int | None = None,
             interval: float | None = None, bounded: bool | None = None) -> Stream:
    """A stream of ``fn(0), fn(1), ...`` (each a batch) that ends after ``count`` batches or when
    ``fn`` returns ``None``. The stream is bounded (``to_table()`` and batch ``fit`` read it to its end)
    when ``count`` is given or ``bounded=True`` (``fn`` promises to return ``None`` eventually).
    ``interval`` paces batches (seconds).

    Example:
        >>> generate(lambda i: {"i": [i]}, count=3).to_table().to_pydict()
        {'i': [0, 1, 2]}
        >>> generate(lambda i: {"i": [i]} if i < 2 else None, bounded=True).to_table().to_pydict()
        {'i': [0, 1]}
    """
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise ValueError(f"generate: count must be a non-negative integer, got {count!r}")
    sch = parse_schema(schema) if schema is not None else None
    return Stream(GenerateSpec(fn, sch, count, interval), [], kind="source", name="generate", schema=sch,
                  bounded=count is not None or bool(bounded))


def from_files(path: str, format: str = "csv", schema: Any = None, watch: bool = False, poll_interval: float = 1.0,
               handle_invalid: str = "error", batch_size: int = 65536, pattern: str | None = None) -> Stream:
    """Rows of the files under ``path`` (a directory or one file): ``csv``, ``json`` (lines) or
    ``parquet``. With ``watch=True`` the directory is followed (unbounded): each complete file
    (renamed into place, or unchanged for one poll) is read once, and the set of files read is
    checkpointed. Bad records raise an error naming file, line and column, or with
    ``handle_invalid="skip"`` go to ``stream.dead_letters()`` and are counted."""
    from flowlearn.stream.files import FilesSourceSpec, check_files_args, first_parquet_schema

    sch = parse_schema(schema) if schema is not None else None
    check_files_args(format, handle_invalid)
    known = sch if sch is not None or format != "parquet" else (lambda: first_parquet_schema(path, pattern))
    return Stream(FilesSourceSpec(path, format, sch, watch, poll_interval, handle_invalid, batch_size, pattern),
                  [], kind="source", name=f"from_files({format})", schema=known, bounded=not watch)


def from_kafka(topic: str, bootstrap_servers: str, group_id: str = "flowlearn", format: str = "json",
               schema: Any = None, start: Any = "committed", metadata_columns: Iterable[str] = (),
               handle_invalid: str = "error", stop_at_end: bool = False, config: dict | None = None) -> Stream:
    """Messages of ``topic`` parsed with ``schema`` (``json`` or ``csv`` payloads); offsets are
    checkpointed. ``start``: ``"earliest"``, ``"latest"``, ``"committed"`` (the group's committed
    offsets, earliest where none) or a timestamp (seconds since the epoch). ``metadata_columns``
    adds any of ``key``, ``topic``, ``partition``, ``offset``, ``timestamp``. ``stop_at_end``
    makes the stream bounded: it ends at the end offsets seen when it starts."""
    from flowlearn.stream.kafka import KafkaSourceSpec, check_kafka_args

    if schema is None:
        raise ValueError("from_kafka needs a schema, e.g. schema='x double, label int'")
    sch = parse_schema(schema)
    meta = list(metadata_columns)
    check_kafka_args(format, start, meta, handle_invalid)
    from flowlearn.stream.kafka import output_schema

    return Stream(KafkaSourceSpec(topic, bootstrap_servers, group_id, format, sch, start, tuple(meta), handle_invalid,
                                  stop_at_end, config),
                  [], kind="source", name=f"from_kafka({topic})", schema=output_schema(sch, meta),
                  bounded=stop_at_end)


def run(*sinks: Any, checkpoint_dir: str | None = None, checkpoint_interval: float = 10.0, **options: Any) -> Any:
    """Start a job writing to ``sinks`` on the current engine (``fl.set_engine``); the same as
    ``fl.run`` without its ``engine`` argument."""
    return current_engine().run(*sinks, checkpoint_dir=checkpoint_dir, checkpoint_interval=checkpoint_interval,
                                **options)
