"""What the dashboard shows, read from a model store and a metrics directory (JSON-ready dicts).

* :meth:`DashboardData.versions`: every committed version of the store with its time, class,
  kind (``batch``, ``online``, ``rebase``: the first online version trained from a newly rebased
  model, ``rollback``, or the metadata's own ``kind``) and gate decision (``passed`` with the
  metric for versions published through a ``ModelGate``; rejected candidates come from the jobs'
  snapshots, see :mod:`flowlearn.dashboard.metrics`).
* :meth:`DashboardData.metrics`: the streaming-evaluation rows under ``<metrics>/eval/``.
* :meth:`DashboardData.jobs`: the jobs' snapshots and recent history under ``<metrics>/jobs/``.
* :meth:`DashboardData.pipeline`: a version's stages as a graph (nodes and edges), read from the
  saved stage's ``metadata.json`` files without loading the model.

Example:
    >>> import flowlearn as fl, tempfile
    >>> from flowlearn.modelstream import ModelStore
    >>> d = tempfile.mkdtemp()
    >>> pipe = fl.Pipeline([fl.feature.StandardScaler(input_col="x", output_col="xs"),
    ...                     fl.classification.LogisticRegression(features_col="xs")])
    >>> model = pipe.fit({"x": [[0.0], [1.0], [2.0], [3.0]], "label": [0.0, 0.0, 1.0, 1.0]})
    >>> store = ModelStore(d)
    >>> store.publish(model, metadata={"kind": "batch"})
    1
    >>> data = DashboardData(store)
    >>> [(v["version"], v["kind"]) for v in data.versions()["versions"]]
    [(1, 'batch')]
    >>> g = data.pipeline()
    >>> [n["label"] for n in g["nodes"]], [(e["source"], e["target"], e["columns"]) for e in g["edges"]]
    (['input', 'StandardScalerModel', 'LogisticRegressionModel'], [(0, 1, ['x']), (1, 2, ['xs'])])
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import threading
import time
from collections import OrderedDict
from typing import Any

import fsspec

from flowlearn.dashboard.metrics import JOB_FORMAT, json_safe
from flowlearn.modelstream.store import ModelStore

__all__ = ["DashboardData", "CHART_METRICS"]

#: The window metrics charted, in this order, when the evaluation rows have them.
CHART_METRICS = ("auc", "log_loss", "accuracy", "rmse")
_OUTPUT_PARAMS = ("output_col", "output_cols", "prediction_col", "raw_prediction_col", "prediction_detail_col",
                  "model_version_col")
_FIT_ONLY_PARAMS = ("label_col", "weight_col", "version_col", "fold_col", "time_col")
_MAX_STAGES = 10_000
_MAX_EVAL_ROWS = 20_000


def _tail_lines(path: str, max_bytes: int) -> list[str]:
    """The whole lines among the last ``max_bytes`` of ``path`` (a partial first or last line dropped)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        start = max(0, size - max_bytes)
        f.seek(start)
        data = f.read()
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]
    lines = lines[:-1]          # after the last "\n": empty, or a line still being written
    return [ln.decode("utf-8", "replace") for ln in lines if ln.strip()]


def _parse_lines(lines: list[str]) -> list[dict]:
    out = []
    for ln in lines:
        try:
            d = json.loads(ln)
        except ValueError:
            continue
        if isinstance(d, dict):
            out.append(d)
    return out


class DashboardData:
    """Reads a :class:`~flowlearn.modelstream.ModelStore` (``store``: a store or its path/URL) and,
    optionally, a metrics directory (``metrics_dir``). ``stale_after``: seconds without a snapshot
    after which a ``running`` job is reported ``stale`` (its process is gone), at least three
    of its own intervals. ``history_bytes``: how much of each history file is read (the tail).
    Thread-safe; immutable things (a version's pipeline) are cached."""

    def __init__(self, store: Any, metrics_dir: str | None = None, stale_after: float = 10.0,
                 history_bytes: int = 256 * 1024) -> None:
        if not isinstance(store, ModelStore):
            if str(store).startswith("kafka://"):
                raise ValueError(f"dashboard: {store} is a Kafka model store; the dashboard reads filesystem model "
                                 f"stores (a path or fsspec URL)")
            if not isinstance(store, (str, os.PathLike)):
                raise TypeError(f"dashboard: store must be a ModelStore or its path, got {type(store).__name__}")
            store = ModelStore(os.fspath(store))
        self.store = store
        self.metrics_dir = metrics_dir
        self.stale_after = float(stale_after)
        self.history_bytes = int(history_bytes)
        self._fs, root = fsspec.core.url_to_fs(self.store.url)
        self._vdir = posixpath.join(root.rstrip("/") or "/", "versions")
        self._lock = threading.Lock()
        self._pipelines: OrderedDict[int, dict] = OrderedDict()
        self._eval_cache: dict[str, tuple[tuple, dict]] = {}   # folder -> (its files' sizes and mtimes, result)

    # -- versions --------------------------------------------------------------------------
    def versions(self) -> dict:
        """``{"store", "versions": [...], "latest"}``; each version ``{"version", "created_at",
        "class", "kind", "metadata", "gate"}``, oldest first (``gate``: ``{"decision": "passed",
        "metric", "value", "rows"}`` or None)."""
        out = []
        prev_base = None
        for v in self.store.versions():
            try:
                info = self.store.version_info(v)
            except LookupError:       # deleted by retention since the listing
                continue
            md = info["metadata"]
            kind = md.get("kind")
            if "rollback_of" in md:
                kind = "rollback"
            elif kind == "online" and md.get("rebased_on") is not None:
                if md.get("rebased_on") != prev_base:
                    kind = "rebase"
                prev_base = md.get("rebased_on")
            gate = md.get("gate")
            gate = ({"decision": "passed", "metric": gate.get("metric"), "value": gate.get("value"),
                     "rows": gate.get("rows")} if isinstance(gate, dict) else None)
            out.append({"version": v, "created_at": info["created_at"], "class": info["class"],
                        "kind": kind or "unknown", "metadata": md, "gate": gate})
        return json_safe({"store": self.store.url, "versions": out,
                          "latest": out[-1]["version"] if out else None})

    # -- evaluation rows -------------------------------------------------------------------
    def metrics(self) -> dict:
        """``{"evaluations": {name: {"metrics": [...], "windows": [...], "versions": [...]}}}``:
        per evaluation log, the charted metrics it has (of ``auc, log_loss, accuracy, rmse``),
        the overall row of each window (``window``, ``rows``, ``model_versions``, ``time`` and
        ``window_*`` / ``cumulative_*``) and the per-version rows (with ``model_version``), each
        deduplicated on ``(window, model_version)`` keeping the last written."""
        evals: dict[str, Any] = {}
        root = os.path.join(self.metrics_dir, "eval") if self.metrics_dir else None
        if root and os.path.isdir(root):
            for name in sorted(os.listdir(root)):
                folder = os.path.join(root, name)
                if name.startswith(".") or not os.path.isdir(folder):
                    continue
                evals[name] = self._evaluation(folder)
        return json_safe({"evaluations": evals})

    def _evaluation(self, folder: str) -> dict:
        files = []
        for fname in sorted(os.listdir(folder)):
            if not fname.endswith(".jsonl") or fname.startswith("."):
                continue
            try:
                st = os.stat(os.path.join(folder, fname))
            except OSError:
                continue
            files.append((fname, st.st_size, st.st_mtime_ns))
        key = tuple(files)
        with self._lock:
            cached = self._eval_cache.get(folder)
        if cached is not None and cached[0] == key:     # nothing was written since the last poll
            return cached[1]
        rows: dict[tuple, dict] = {}
        for fname, _size, _mtime in files:
            try:
                lines = _tail_lines(os.path.join(folder, fname), 16 * self.history_bytes)
            except OSError:
                continue
            for r in _parse_lines(lines):
                if "window" in r:
                    rows[(r["window"], r.get("model_version"))] = r
        ordered = sorted(rows.values(), key=lambda r: (r["window"], r.get("model_version") is not None,
                                                       r.get("model_version") or 0))[-_MAX_EVAL_ROWS:]
        overall = [r for r in ordered if r.get("model_version") is None]
        per_version = [r for r in ordered if r.get("model_version") is not None]
        present = {k[len("window_"):] for r in ordered[-50:] for k in r if k.startswith("window_")}
        result = {"metrics": [m for m in CHART_METRICS if m in present], "windows": overall, "versions": per_version}
        with self._lock:
            self._eval_cache[folder] = (key, result)
        return result

    # -- jobs ------------------------------------------------------------------------------
    def jobs(self) -> dict:
        """``{"jobs": [...]}``: each job's snapshot (``status`` ``stale`` when a running job has not
        written for ``stale_after`` seconds) with ``history``, its recent history lines."""
        out = []
        root = os.path.join(self.metrics_dir, "jobs") if self.metrics_dir else None
        now = time.time()
        if root and os.path.isdir(root):
            for fname in sorted(os.listdir(root)):
                if not fname.endswith(".json") or fname.startswith("."):
                    continue
                try:
                    with open(os.path.join(root, fname)) as f:
                        snap = json.load(f)
                except (OSError, ValueError):
                    continue
                if not isinstance(snap, dict) or snap.get("format") != JOB_FORMAT:
                    continue
                limit = max(self.stale_after, 3 * float(snap.get("interval") or 1.0))
                if snap.get("status") == "running" and now - float(snap.get("updated_at") or 0) > limit:
                    snap["status"] = "stale"
                hist_path = os.path.join(root, fname[:-len(".json")] + ".jsonl")
                try:
                    snap["history"] = _parse_lines(_tail_lines(hist_path, self.history_bytes))
                except OSError:
                    snap["history"] = []
                out.append(snap)
        return json_safe({"jobs": out})

    # -- pipeline graph --------------------------------------------------------------------
    def pipeline(self, version: int | None = None) -> dict:
        """The stages of ``version`` (default: the newest) as a graph: ``{"version", "class",
        "nodes": [{"id", "label", "class", "kind", "params", "layer", "inputs", "outputs"}], "edges":
        [{"source", "target", "columns"}]}``. Node 0 is the input table. A ``PipelineModel``'s
        edges follow the columns each stage reads from the stage that last wrote them (the
        input, when none did); a ``GraphModel``'s follow its table ids. ``layer`` is the
        longest path from the input (for drawing left to right). ``LookupError`` when the
        version is not committed."""
        if version is None:
            version = self.store.latest_version()
            if version is None:
                raise LookupError(f"{self.store.url}: the model store has no committed version")
        version = int(version)
        with self._lock:
            if version in self._pipelines:
                return self._pipelines[version]
        info = self.store.version_info(version)      # LookupError when not committed
        root = posixpath.join(self._vdir, f"{version:012d}")
        meta = self._read_meta(root, "metadata.json", info["files"])
        graph = self._graph(root, meta, info["files"])
        graph.update({"version": version, "class": meta.get("class")})
        graph = json_safe(graph)
        with self._lock:
            self._pipelines[version] = graph
            while len(self._pipelines) > 64:
                self._pipelines.popitem(last=False)
        return graph

    def _read_meta(self, root: str, rel: str, files: dict) -> dict:
        with self._fs.open(posixpath.join(root, rel), "rb") as f:
            body = f.read()
        expected = files.get(rel)
        if expected is not None and hashlib.sha256(body).hexdigest() != expected:
            raise ValueError(f"{self.store.url}: {rel} of {posixpath.basename(root)} fails its checksum; the "
                             f"version is corrupt")
        meta = json.loads(body)
        if not isinstance(meta, dict):
            raise ValueError(f"{self.store.url}: {rel} of {posixpath.basename(root)} is not a JSON object")
        return meta

    def _graph(self, root: str, meta: dict, files: dict) -> dict:
        count = int(meta.get("stage_count") or 0)
        if count > _MAX_STAGES:
            raise ValueError(f"{self.store.url}: {count} stages is more than a dashboard draws ({_MAX_STAGES})")
        subs = [self._read_meta(root, f"stages/{i:03d}/metadata.json", files) for i in range(count)]
        nodes = [{"id": 0, "label": "input", "kind": "input", "params": {}, "inputs": [], "outputs": []}]
        for i, m in enumerate(subs):
            params = m.get("params") or {}
            ins, outs = _columns(params)
            nodes.append({"id": i + 1, "label": _short(m.get("class")), "class": m.get("class"), "kind": "stage",
                          "params": params,
                          "inputs": ins, "outputs": outs, "stage_count": int(m.get("stage_count") or 0)})
        if not subs:   # a single model: one stage after the input
            params = meta.get("params") or {}
            ins, outs = _columns(params)
            nodes.append({"id": 1, "label": _short(meta.get("class")), "class": meta.get("class"), "kind": "stage",
                          "params": params,
                          "inputs": ins, "outputs": outs, "stage_count": 0})
            edges = [{"source": 0, "target": 1, "columns": ins}]
        elif "nodes" in (meta.get("extra") or {}):
            edges = _table_edges(meta["extra"])
        else:
            edges = _column_edges(nodes)
        layer = {0: 0}
        for n in nodes[1:]:
            preds = [layer.get(e["source"], 0) for e in edges if e["target"] == n["id"]]
            layer[n["id"]] = 1 + max(preds, default=0)
        for n in nodes:
            n["layer"] = layer[n["id"]]
        return {"nodes": nodes, "edges": edges}


def _short(cls: Any) -> str:
    return str(cls).rsplit(".", 1)[-1] if cls else "?"


def _as_list(v: Any) -> list[str]:
    if isinstance(v, str):
        return [v]
    if isinstance(v, list):
        return [x for x in v if isinstance(x, str)]
    return []


def _columns(params: dict) -> tuple[list[str], list[str]]:
    """(columns a stage reads when it transforms, columns it writes), from its ``*_col(s)`` params."""
    ins: list[str] = []
    outs: list[str] = []
    for k, v in params.items():
        if not (k.endswith("_col") or k.endswith("_cols")) or k in _FIT_ONLY_PARAMS:
            continue
        target = outs if k in _OUTPUT_PARAMS else ins
        for c in _as_list(v):
            if c and c not in target:
                target.append(c)
    return ins, outs


def _column_edges(nodes: list[dict]) -> list[dict]:
    """Edges of a chain: each column a stage reads comes from the last earlier stage writing it."""
    writer: dict[str, int] = {}
    edges: dict[tuple[int, int], list[str]] = {}
    for n in nodes[1:]:
        sources = set()
        for c in n["inputs"]:
            src = writer.get(c, 0)
            edges.setdefault((src, n["id"]), []).append(c)
            sources.add(src)
        if not n["inputs"]:   # a stage whose columns are unknown: keep the chain's order
            prev = n["id"] - 1
            edges.setdefault((prev, n["id"]), [])
        for c in n["outputs"]:
            writer[c] = n["id"]
    return [{"source": s, "target": t, "columns": cols} for (s, t), cols in sorted(edges.items())]


def _table_edges(extra: dict) -> list[dict]:
    """Edges of a ``GraphModel``: from the node (or graph input) producing a table to those reading it."""
    producer = {int(t): 0 for t in extra.get("inputs", [])}
    edges: dict[tuple[int, int], list[str]] = {}
    for i, n in enumerate(extra.get("nodes", [])):
        for t in dict.fromkeys(list(n.get("model_inputs", [])) + list(n.get("estimator_inputs", []))):
            edges.setdefault((producer.get(int(t), 0), i + 1), []).append(f"table {t}")
        for t in n.get("outputs", []):
            producer[int(t)] = i + 1
    return [{"source": s, "target": t, "columns": cols} for (s, t), cols in sorted(edges.items())]
