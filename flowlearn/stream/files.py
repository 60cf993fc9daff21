"""``from_files``: CSV, JSON lines and Parquet files, optionally following a directory.

A file is read once, when complete: names starting with ``.`` or ``_`` and names ending in
``.tmp``/``.inprogress``/``.crc`` are ignored (write under such a name and rename into place);
in watch mode a visible file must also keep the same size and modification time across two
directory listings (``poll_interval`` apart), so a file still being written is not read early.
Files are read in order of modification time, then name. The checkpointed offset is the set of
files fully read plus the file being read and how many of its rows were emitted.

Bad records (malformed or not matching the schema) raise ``ValueError`` naming the file, the
line and the column; with ``handle_invalid="skip"`` they go to the ``dead_letter`` side output
(``stream.dead_letters()``) and are counted (metric ``side_dead_letter_rows``) when the file is
opened, with its first rows; a job restored mid-file does not send them again. A file whose
schema differs from the stream's (Parquet, or CSV/JSON without an explicit schema) is an
error saying which column changed how.

Example:
    >>> import flowlearn as fl, flowlearn.stream as fls, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> fl.write_csv({"x": [1.0, 2.0]}, os.path.join(d, "a.csv"))
    >>> fls.from_files(d, format="csv", schema="x double").to_table().to_pydict()
    {'x': [1.0, 2.0]}
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from typing import ClassVar

import pyarrow as pa

from flowlearn.data.io import parquet_table
from flowlearn.stream.core import check_schema
from flowlearn.stream.operator import OperatorState
from flowlearn.stream.plan import Spec, register_operator
from flowlearn.stream.parsing import dead_letter_table, parse_buffer, parse_records
from flowlearn.stream.source import Source

__all__ = ["FileSource", "check_files_args"]

log = logging.getLogger(__name__)

_FORMATS = ("csv", "json", "parquet")


def check_files_args(format: str, handle_invalid: str) -> None:
    if format not in _FORMATS:
        raise ValueError(f"from_files: format must be one of {list(_FORMATS)}, got {format!r}")
    if handle_invalid not in ("error", "skip"):
        raise ValueError(f"from_files: handle_invalid must be 'error' or 'skip', got {handle_invalid!r}")


def _hidden(name: str) -> bool:
    return name.startswith((".", "_")) or name.endswith((".tmp", ".inprogress", ".crc"))


def first_parquet_schema(path: str, pattern: str | None = None) -> pa.Schema | None:
    """The schema of the Parquet file a ``from_files(path, format="parquet")`` source reads first
    (the oldest; its schema is the source's when none is given), or None when there is none yet."""
    import fnmatch

    import pyarrow.parquet as pq

    if os.path.isfile(path):
        return pq.read_schema(path)
    try:
        files = [(e.stat().st_mtime_ns, e.name, e.path) for e in os.scandir(path) if e.is_file()
                 and not _hidden(e.name) and (pattern is None or fnmatch.fnmatch(e.name, pattern))]
    except FileNotFoundError:
        return None
    return pq.read_schema(min(files)[2]) if files else None


class FileSource(Source):
    def __init__(self, path: str, format: str, schema: pa.Schema | None, watch: bool, poll_interval: float,
                 handle_invalid: str, batch_size: int, pattern: str | None) -> None:
        super().__init__()
        self.path, self.format, self.schema = path, format, schema
        self.watch, self.poll_interval = watch, poll_interval
        self.handle_invalid, self.batch_size, self.pattern = handle_invalid, batch_size, pattern
        self.bounded = not watch
        self.done: set[str] = set()
        self.queue: list[str] = []
        self.cur_name: str | None = None
        self.cur_rows = 0
        self._cur_table: pa.Table | None = None
        self._seen: dict[str, tuple[int, int]] = {}
        self._last_list = -1e18
        self._listed_once = False
        self._base = path if not os.path.isfile(path) else os.path.dirname(path)

    # -- discovery -------------------------------------------------------------------------
    def _list(self) -> None:
        if os.path.isfile(self.path):
            names = [(os.path.basename(self.path), os.stat(self.path))]
            base = os.path.dirname(self.path)
        else:
            base = self.path
            try:
                entries = list(os.scandir(self.path))
            except FileNotFoundError:
                if not self.watch:
                    raise FileNotFoundError(f"from_files: {self.path} does not exist") from None
                entries = []
            names = [(e.name, e.stat()) for e in entries if e.is_file() and not _hidden(e.name)
                     and (self.pattern is None or __import__("fnmatch").fnmatch(e.name, self.pattern))]
        self._base = base
        ready = []
        for name, st in names:
            if name in self.done or name == self.cur_name or name in self.queue:
                continue
            sig = (st.st_size, st.st_mtime_ns)
            if self.watch and self._seen.get(name) != sig:
                self._seen[name] = sig  # not yet stable: look again next listing
                continue
            ready.append((st.st_mtime_ns, name))
        for _, name in sorted(ready):
            self._seen.pop(name, None)
            self.queue.append(name)
        self._listed_once = True

    # -- reading ---------------------------------------------------------------------------
    def _read_file(self, name: str, emit_dead_letters: bool = True) -> pa.Table:
        full = os.path.join(self._base, name)
        if self.format == "parquet":
            with open(full, "rb") as f:
                t = parquet_table(f, f"file {full}")
            if self.schema is None:
                self.schema = t.schema
            elif not t.schema.equals(self.schema):
                if set(self.schema.names) <= set(t.column_names):
                    t = t.select(self.schema.names)
                check_schema(self.schema, t.schema, f"file {full}")
            return t
        with open(full, "rb") as f:
            data = f.read()
        header_names = None
        offset_lines = 0
        if self.format == "csv":
            nl = data.find(b"\n")
            header = (data if nl < 0 else data[:nl]).decode("utf-8", "replace").strip().strip("\r")
            header_names = [h.strip().strip('"') for h in header.split(",")] if header else []
            data = b"" if nl < 0 else data[nl + 1:]
            offset_lines = 1
            if self.schema is not None:
                missing = [n for n in self.schema.names if n not in header_names]
                if missing:
                    raise ValueError(f"file {full}, line 1: column(s) {missing} of the schema are missing from the "
                                     f"header {header_names}")
        if not data.strip():
            return (self.schema.empty_table() if self.schema is not None else pa.table({}))
        try:
            t = parse_buffer(data, self.format, self.schema, header_names)
        except ValueError:
            if self.schema is None:
                raise ValueError(f"file {full}: cannot parse without a schema; pass schema=...") from None
            # every non-blank line is one record (blank lines give no row on the fast path either)
            numbered = [(n, line) for n, line in enumerate(data.split(b"\n"), 1 + offset_lines)
                        if (line.strip() if self.format == "json" else line.strip(b"\r"))]
            lines = [line for _, line in numbered]
            t, bad = parse_records(lines, self.format, self.schema, header_names)
            if bad:
                first = bad[0]
                if self.handle_invalid == "error":
                    raise ValueError(f"file {full}, line {numbered[first[0]][0]}, column '{first[1]}': "
                                     f"{first[2]} (record {lines[first[0]][:200]!r}); pass handle_invalid='skip' "
                                     f"to route bad records to the dead-letter sink") from None
                if emit_dead_letters:
                    self.ctx.side("dead_letter", dead_letter_table(
                        f"file {full}", [f"line {numbered[i][0]}" for i, _, _ in bad], [c for _, c, _ in bad],
                        [r for _, _, r in bad], [lines[i].decode("utf-8", "replace") for i, _, _ in bad]))
        if self.schema is None:
            self.schema = t.schema
        elif not t.schema.equals(self.schema):
            check_schema(self.schema, t.schema, f"file {full}")
        return t

    def ready_files(self) -> list[str]:
        """The absolute paths of the files a read would take now, in reading order (an engine that
        reads files in parallel lists them with this)."""
        self._list()
        return [os.path.abspath(os.path.join(self._base, n)) for n in self.queue]

    def read_table(self, path: str) -> pa.Table:
        """One whole file, parsed and checked as this source reads it (its dead letters, under
        ``handle_invalid="skip"``, go to the side output as usual)."""
        self._base, name = os.path.split(path)
        return self._read_file(name)

    def poll(self, max_rows: int) -> list[pa.Table]:
        if self._cur_table is None and self.cur_name is not None:
            # resumed mid-file: the file's dead letters went out with its first rows, before the checkpoint
            self._cur_table = self._read_file(self.cur_name, emit_dead_letters=False)
        if self._cur_table is None:
            now = time.monotonic()
            if not self.queue and (not self._listed_once or (self.watch and now - self._last_list >= self.poll_interval)):
                self._last_list = now
                self._list()
            if not self.queue:
                return []
            self.cur_name = self.queue.pop(0)
            self._cur_table = self._read_file(self.cur_name)
            self.ctx.count("files_opened")
        n = min(self.batch_size, max_rows, self._cur_table.num_rows - self.cur_rows)
        out = self._cur_table.slice(self.cur_rows, n) if n > 0 else None
        self.cur_rows += max(n, 0)
        if self.cur_rows >= self._cur_table.num_rows:
            self.done.add(self.cur_name)
            self.ctx.count("files_read")
            self.cur_name, self.cur_rows, self._cur_table = None, 0, None
        return [out] if out is not None else []

    def finished(self) -> bool:
        return (not self.watch and self._listed_once and not self.queue and self.cur_name is None)

    def lag(self) -> int:
        return len(self.queue) + (1 if self.cur_name is not None else 0)

    def snapshot_state(self) -> OperatorState:
        return OperatorState({"done": sorted(self.done), "current": self.cur_name, "rows": self.cur_rows,
                              "schema": self.schema.to_string() if self.schema is not None else None},
                             {"schema": self.schema.empty_table()} if self.schema is not None else {})

    def restore_state(self, state: OperatorState) -> None:
        self.done = set(state.data["done"])
        if "schema" in state.tables and self.schema is None:
            self.schema = state.tables["schema"].schema
        self.cur_name = state.data.get("current")  # read again by the next poll, which resumes at its row
        self.cur_rows = int(state.data["rows"]) if self.cur_name is not None else 0


@dataclasses.dataclass(frozen=True, eq=False)
class FilesSourceSpec(Spec):
    """The rows of the files under ``path`` (see ``fl.stream.from_files``)."""

    path: str
    format: str
    schema: pa.Schema | None
    watch: bool
    poll_interval: float
    handle_invalid: str
    batch_size: int
    pattern: str | None
    state: ClassVar[str] = "files read, current file and row"


register_operator(FilesSourceSpec, lambda s: FileSource(s.path, s.format, s.schema, s.watch, s.poll_interval,
                                                        s.handle_invalid, s.batch_size, s.pattern))
