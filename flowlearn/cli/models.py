"""``flowlearn models ls|show|rollback URL [VERSION]``: inspect and roll back model stores.

URL is a path or fsspec URL of a :class:`~flowlearn.modelstream.ModelStore`, or
``kafka://HOST:PORT[,HOST:PORT...]/TOPIC`` for a :class:`~flowlearn.modelstream.KafkaModelStore`.

Examples::

    flowlearn models ls ./models                 # version, created_at, class, metadata
    flowlearn models ls ./models --verify        # also check every file's checksum
    flowlearn models show ./models 7             # stages, params and model data of version 7
    flowlearn models rollback ./models 5         # republish version 5 as a new version

Wiring (``flowlearn/cli/main.py``)::

    sub = parser.add_subparsers(dest="command")
    add_models_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from typing import Any, TextIO

__all__ = ["add_models_parser", "run_models"]


def add_models_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``models`` command (with ``ls``, ``show``, ``rollback``) to ``subparsers``."""
    p = subparsers.add_parser(
        "models", help="list, inspect and roll back the versions in a model store",
        description="List, inspect and roll back the versions in a model store. URL is a path, an fsspec URL, "
                    "or kafka://HOST:PORT/TOPIC.")
    sub = p.add_subparsers(dest="models_command", metavar="{ls,show,rollback}")
    sub.required = True

    ls = sub.add_parser("ls", help="list versions: version, created_at, class, metadata",
                        description="List the versions of a model store, oldest first: version, creation time, "
                                    "the model's class and its metadata (kind, producer, model_version, ...).")
    ls.add_argument("url", help="model store path, fsspec URL or kafka://HOST:PORT/TOPIC")
    ls.add_argument("--verify", action="store_true", help="check every version's files against their checksums")
    ls.add_argument("--json", action="store_true", help="print JSON lines instead of a table")

    show = sub.add_parser("show", help="show one version's stages, params and model data",
                          description="Show one version of a model store: its metadata, the tree of its stages "
                                      "with their parameters, and the schema and size of each model data table.")
    show.add_argument("url", help="model store path, fsspec URL or kafka://HOST:PORT/TOPIC")
    show.add_argument("version", nargs="?", type=int, default=None, help="version (default: the newest valid one)")
    show.add_argument("--json", action="store_true", help="print JSON")

    rb = sub.add_parser("rollback", help="republish an old version as a new version",
                        description="Republish an old version as the newest version (the old one stays), so "
                                    "predictors following the store swap back to it.")
    rb.add_argument("url", help="model store path, fsspec URL or kafka://HOST:PORT/TOPIC")
    rb.add_argument("version", type=int, help="the version to republish")
    rb.add_argument("--note", default=None, help="a note stored in the new version's metadata")

    p.set_defaults(func=run_models)
    return p


def _time(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def _short_class(name: str | None) -> str:
    return (name or "?").rsplit(".", 1)[-1]


def _stage_tree(stage: Any) -> dict:
    data = getattr(stage, "_model_data", None) or []
    node: dict[str, Any] = {
        "class": type(stage).__dict__.get("_registered_name") or type(stage).__name__,
        "params": stage.get_params(),
        "model_data": [{"rows": t.num_rows, "schema": [f"{f.name}: {f.type}" for f in t.schema]} for t in data],
    }
    subs = stage._sub_stages()
    if subs:
        node["stages"] = [_stage_tree(s) for s in subs]
    return node


def _print_tree(node: dict, out: TextIO, indent: str = "", label: str = "") -> None:
    out.write(f"{indent}{label}{_short_class(node['class'])}  ({node['class']})\n")
    inner = indent + "    "
    if node["params"]:
        out.write(f"{inner}params: {json.dumps(node['params'], sort_keys=True)}\n")
    for i, d in enumerate(node["model_data"]):
        out.write(f"{inner}model data {i}: {d['rows']} rows; {', '.join(d['schema'])}\n")
    for i, child in enumerate(node.get("stages", [])):
        _print_tree(child, out, inner, f"[{i}] ")


def _ls(store: Any, args: argparse.Namespace, out: TextIO) -> int:
    from flowlearn.modelstream import CorruptVersionError

    rows = []
    for v in store.versions():
        info = store.version_info(v)
        row = {"version": v, "created_at": info["created_at"], "class": info.get("class"),
               "metadata": info["metadata"]}
        if args.verify:
            try:
                store.verify(v)
                row["status"] = "ok"
            except CorruptVersionError as e:
                row["status"] = f"CORRUPT: {e}"
        rows.append(row)
    if args.json:
        for r in rows:
            out.write(json.dumps(r, sort_keys=True) + "\n")
        return 0
    if not rows:
        out.write(f"{store.url}: no versions\n")
        return 0
    table = [["VERSION", "CREATED_AT", "CLASS", "METADATA"] + (["STATUS"] if args.verify else [])]
    for r in rows:
        table.append([str(r["version"]), _time(r["created_at"]), _short_class(r["class"]),
                      json.dumps(r["metadata"], sort_keys=True)] + ([r["status"]] if args.verify else []))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
    return 0


def _show(store: Any, args: argparse.Namespace, out: TextIO) -> int:
    mv = store.load(args.version)
    doc = {"version": mv.version, "created_at": mv.created_at, "metadata": mv.metadata,
           "model": _stage_tree(mv.model)}
    if args.json:
        out.write(json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n")
        return 0
    out.write(f"version:    {mv.version}\n")
    out.write(f"created_at: {_time(mv.created_at)}\n")
    out.write(f"metadata:   {json.dumps(mv.metadata, sort_keys=True)}\n")
    _print_tree(doc["model"], out)
    return 0


def _rollback(store: Any, args: argparse.Namespace, out: TextIO) -> int:
    extra = {"note": args.note} if args.note else None
    new = store.rollback(args.version, metadata=extra)
    out.write(f"rolled back: version {args.version} republished as version {new}\n")
    return 0


def run_models(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``flowlearn models ...`` from parsed arguments; returns the exit code."""
    from flowlearn.modelstream import CorruptVersionError, open_store

    out = out or sys.stdout
    err = err or sys.stderr
    store = None
    try:
        if not args.url.startswith("kafka://"):
            import fsspec

            fs, root = fsspec.core.url_to_fs(args.url)
            if not fs.exists(root.rstrip("/") + "/versions"):
                raise LookupError(f"{args.url} is not a model store (it has no versions/ directory)")
        store = open_store(args.url)
        handler = {"ls": _ls, "show": _show, "rollback": _rollback}[args.models_command]
        return handler(store, args, out)
    except (LookupError, CorruptVersionError, ValueError, TypeError, FileNotFoundError, ImportError) as e:
        err.write(f"flowlearn models {args.models_command}: error: {e}\n")
        return 1
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()
