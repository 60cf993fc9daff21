"""The on-disk format of stages. No pickle: params are JSON, model data Arrow IPC.

```
<path>/metadata.json     {"format": "flowlearn.stage", "format_version": 1, "class": ...,
                          "library_version": ..., "params": {...}, "created_at": ...,
                          "model_data_count": n, "stage_count": m, "extra": {...}}
<path>/data/<i>.arrow    model data tables, Arrow IPC files, in order
<path>/stages/<NNN>/     sub-stages of a pipeline or graph
```

Writes go to a temporary directory beside ``path`` that is renamed into place, so a reader
sees either no stage or a whole one. ``load_stage`` only instantiates registered stage classes,
and refuses a directory whose model data files or sub-stage folders do not match the counts in
its ``metadata.json`` (a pipeline copied without one of its stages must not load as a shorter
pipeline). Stages saved before the counts were recorded are checked for gaps only.

Example:
    >>> import flowlearn as fl, tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> fl.feature.StandardScaler(with_mean=True).save(os.path.join(d, "s"))
    >>> fl.load(os.path.join(d, "s")).with_mean
    True
"""
from __future__ import annotations

import json
import math
import posixpath
import time
import uuid
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.ipc as ipc

from flowlearn._version import __version__
from flowlearn.api import Stage, registered_stage

__all__ = ["save_stage", "load_stage", "write_stage_files", "load_stage_files", "encode_floats", "decode_floats"]

FORMAT = "flowlearn.stage"
FORMAT_VERSION = 1


def encode_floats(v: Any) -> Any:
    """JSON has no NaN/Infinity: write non-finite floats as {"__float__": "nan" | "inf" | "-inf"}."""
    if isinstance(v, float) and not math.isfinite(v):
        return {"__float__": repr(v)}
    if isinstance(v, list):
        return [encode_floats(x) for x in v]
    if isinstance(v, dict):
        return {k: encode_floats(x) for k, x in v.items()}
    return v


def decode_floats(v: Any) -> Any:
    if isinstance(v, dict):
        if set(v) == {"__float__"}:
            return float(v["__float__"])
        return {k: decode_floats(x) for k, x in v.items()}
    if isinstance(v, list):
        return [decode_floats(x) for x in v]
    return v


def write_stage_files(stage: Stage, fs: Any, root: str) -> None:
    """Write ``stage`` into the (new, empty) directory ``root`` of filesystem ``fs``."""
    name = type(stage).__dict__.get("_registered_name")
    if not name:
        raise ValueError(f"{type(stage).__name__} is not a registered flowlearn stage; "
                         f"call fl.register_stage({type(stage).__name__}) before saving it")
    fs.makedirs(root, exist_ok=True)
    model_data = getattr(stage, "_model_data", None) or []
    subs = stage._sub_stages()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class": name,
        "library_version": __version__,
        "params": encode_floats(stage.get_params()),
        "created_at": time.time(),
        "model_data_count": len(model_data),
        "stage_count": len(subs),
        "extra": stage._extra_metadata(),
    }
    with fs.open(posixpath.join(root, "metadata.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True, allow_nan=False)
    if model_data:
        fs.makedirs(posixpath.join(root, "data"), exist_ok=True)
    for i, t in enumerate(model_data):
        with fs.open(posixpath.join(root, "data", f"{i}.arrow"), "wb") as f:
            with ipc.new_file(f, t.schema) as w:
                w.write_table(t)
    for i, sub in enumerate(subs):
        write_stage_files(sub, fs, posixpath.join(root, "stages", f"{i:03d}"))


def save_stage(stage: Stage, path: str, overwrite: bool = False) -> None:
    fs, root = fsspec.core.url_to_fs(path)
    root = root.rstrip("/")
    if fs.exists(root):
        if not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it")
    parent = posixpath.dirname(root)
    tmp = posixpath.join(parent, f".{posixpath.basename(root)}.{uuid.uuid4().hex}.tmp")
    try:
        write_stage_files(stage, fs, tmp)
        if fs.exists(root):
            old = tmp + ".old"
            fs.mv(root, old, recursive=True)
            fs.mv(tmp, root, recursive=True)
            fs.rm(old, recursive=True)
        else:
            fs.mv(tmp, root, recursive=True)
    finally:
        if fs.exists(tmp):
            fs.rm(tmp, recursive=True)


def read_metadata(fs: Any, root: str) -> dict:
    meta_path = posixpath.join(root, "metadata.json")
    if not fs.exists(meta_path):
        raise FileNotFoundError(f"{root} is not a saved flowlearn stage: metadata.json is missing")
    with fs.open(meta_path, "r") as f:
        try:
            meta = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{meta_path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{meta_path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{meta_path}: format_version {meta['format_version']} is newer than this flowlearn "
                         f"({__version__}) reads ({FORMAT_VERSION}); upgrade flowlearn")
    return meta


def _numbered_entries(fs: Any, folder: str, names: Any, meta_path: str, expected: Any, what: str) -> list[str]:
    """The paths ``names(0), names(1), ...`` inside ``folder``, checked against the count that
    ``metadata.json`` recorded (``expected``; None for stages saved before counts were recorded)."""
    present = {posixpath.basename(p.rstrip("/")) for p in fs.ls(folder, detail=False)} if fs.exists(folder) else set()
    count = len(present) if expected is None else expected
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"{meta_path}: {what} count {expected!r} is not a non-negative integer")
    wanted = [names(i) for i in range(count)]
    missing = [n for n in wanted if n not in present]
    if missing:
        raise ValueError(f"{folder}/{missing[0]} is missing: {meta_path} records {count} {what}(s) and the "
                         f"folder holds {sorted(present)}; the saved stage is incomplete, save it again")
    extra = sorted(present - set(wanted))
    if extra:
        raise ValueError(f"{folder} holds {extra} beyond the {count} {what}(s) that {meta_path} records; "
                         f"the saved stage is not what was written, save it again")
    return [posixpath.join(folder, n) for n in wanted]


def load_stage_files(fs: Any, root: str) -> Stage:
    """Load the stage saved in directory ``root`` of filesystem ``fs`` (inverse of ``write_stage_files``)."""
    meta = read_metadata(fs, root)
    meta_path = posixpath.join(root, "metadata.json")
    cls = registered_stage(meta["class"])
    tables = []
    for p in _numbered_entries(fs, posixpath.join(root, "data"), lambda i: f"{i}.arrow", meta_path,
                               meta.get("model_data_count"), "model data table"):
        with fs.open(p, "rb") as f:
            tables.append(ipc.open_file(pa.BufferReader(f.read())).read_all())
    subs = [load_stage_files(fs, p)
            for p in _numbered_entries(fs, posixpath.join(root, "stages"), lambda i: f"{i:03d}", meta_path,
                                       meta.get("stage_count"), "stage")]
    return cls._from_saved(decode_floats(meta.get("params", {})), tables, subs, meta.get("extra", {}))


def load_stage(path: str) -> Stage:
    """Load any saved stage, pipeline or graph (``fl.load``)."""
    fs, root = fsspec.core.url_to_fs(path)
    return load_stage_files(fs, root.rstrip("/"))
