"""Checkpoint storage: one directory per checkpoint, Arrow IPC for tables, JSON for the rest.

Layout::

    <checkpoint_dir>/chk-000007/_metadata.json      {"id": 7, "created_at": ..., "operators":
                                                      {uid: {"data": {...}, "tables": [names]}}}
    <checkpoint_dir>/chk-000007/<n>.arrow           one Arrow IPC file per state table
    <checkpoint_dir>/_LATEST                        id of the newest *complete* checkpoint

A checkpoint directory is written under a temporary name and renamed into place (pending);
after every operator has been told it is durable (sinks commit), ``_LATEST`` is replaced
atomically (complete). A pending checkpoint newer than ``_LATEST`` is adopted on restart only
if every operator can finish its commit (see ``Operator.recover_commit``). Nothing is pickled.

Example:
    >>> import tempfile, pyarrow as pa
    >>> from flowlearn.stream.operator import OperatorState
    >>> store = CheckpointStore(tempfile.mkdtemp())
    >>> store.write(1, {"op": OperatorState({"n": 3}, {"buf": pa.table({"x": [1]})})})
    >>> store.mark_complete(1)
    >>> states = store.read(1)
    >>> states["op"].data, states["op"].tables["buf"].num_rows
    ({'n': 3}, 1)
"""
from __future__ import annotations

import json
import os
import shutil
import time
import uuid

import pyarrow as pa

from flowlearn.stream.operator import OperatorState

__all__ = ["CheckpointStore"]


def _atomic_write_text(path: str, text: str) -> None:
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CheckpointStore:
    """Checkpoints of one job in a local directory (see the module docstring)."""

    def __init__(self, root: str, keep: int = 2) -> None:
        self.root = root
        self.keep = keep
        os.makedirs(root, exist_ok=True)

    def _dir(self, cid: int) -> str:
        return os.path.join(self.root, f"chk-{cid:06d}")

    def latest_complete(self) -> int | None:
        p = os.path.join(self.root, "_LATEST")
        if not os.path.exists(p):
            return None
        return int(open(p).read().strip())

    def candidates(self) -> list[int]:
        """Ids of checkpoints whose directory is in place, newest first."""
        out = []
        for name in os.listdir(self.root):
            if name.startswith("chk-") and os.path.exists(os.path.join(self.root, name, "_metadata.json")):
                try:
                    out.append(int(name[4:]))
                except ValueError:
                    continue
        return sorted(out, reverse=True)

    def write(self, cid: int, states: dict[str, OperatorState], extra: dict | None = None) -> None:
        tmp = os.path.join(self.root, f".chk-{cid:06d}.{uuid.uuid4().hex}.tmp")
        os.makedirs(tmp)
        ops: dict[str, dict] = {}
        n = 0
        for uid, st in states.items():
            names = []
            for tname, t in st.tables.items():
                fname = f"{n}.arrow"
                n += 1
                with pa.OSFile(os.path.join(tmp, fname), "wb") as f, pa.ipc.new_file(f, t.schema) as w:
                    w.write_table(t)
                names.append([tname, fname])
            ops[uid] = {"data": st.data, "tables": names}
        meta = {"id": cid, "created_at": time.time(), "operators": ops, **(extra or {})}
        with open(os.path.join(tmp, "_metadata.json"), "w") as f:
            json.dump(meta, f)
            f.flush()
            os.fsync(f.fileno())
        final = self._dir(cid)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(tmp, final)

    def read(self, cid: int) -> dict[str, OperatorState]:
        d = self._dir(cid)
        with open(os.path.join(d, "_metadata.json")) as f:
            meta = json.load(f)
        out = {}
        for uid, op in meta["operators"].items():
            tables = {}
            for tname, fname in op["tables"]:
                with pa.memory_map(os.path.join(d, fname)) as src:
                    tables[tname] = pa.ipc.open_file(src).read_all()
            out[uid] = OperatorState(op["data"], tables)
        return out

    def mark_complete(self, cid: int) -> None:
        _atomic_write_text(os.path.join(self.root, "_LATEST"), str(cid))
        self._prune(cid)

    def discard(self, cid: int) -> None:
        shutil.rmtree(self._dir(cid), ignore_errors=True)

    def _prune(self, latest: int) -> None:
        older = [c for c in self.candidates() if c < latest]
        for c in older[self.keep - 1:]:
            shutil.rmtree(self._dir(c), ignore_errors=True)
        for name in os.listdir(self.root):
            if name.startswith(".chk-") and name.endswith(".tmp"):
                shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
