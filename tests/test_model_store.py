"""ModelStore (filesystem / fsspec): atomic publish, strictly increasing versions under
concurrent publisher processes, _COMMITTED checksums, torn and corrupt versions, retention,
rollback, whole PipelineModels as versions, watch, and the `flowlearn models` CLI."""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pyarrow as pa
import pytest

import flowlearn as fl
from flowlearn.cli.models import add_models_parser
from flowlearn.modelstream import CorruptVersionError, ModelStore, ModelVersion
from flowlearn.params import Param


# ---- a tiny registered model (no flowlearn algorithm is needed to test the store) ---------

class AddK(fl.Model):
    """output = input + k, with k the model data."""

    input_col = Param(str, default="x")
    output_col = Param(str, default="y")

    def _load_model_data(self, tables):
        self._k = float(tables[0].column("k")[0].as_py())

    def _transform(self, t):
        self._require_model()
        x = t.column(self.input_col).to_numpy()
        return t.append_column(self.output_col, pa.array(x + self._k))

    def row_fn(self):
        k, i, o = self._k, self.input_col, self.output_col

        def f(row):
            row[o] = float(row[i]) + k

        return f


fl.register_stage(AddK, name="tests.test_model_store.AddK")


def add_k(k: float, i: str = "x", o: str = "y") -> AddK:
    return AddK(input_col=i, output_col=o).set_model_data({"k": [float(k)]})


def pipeline(k: float) -> fl.PipelineModel:
    """z = x + 2k: two stages that must come from the same version."""
    return fl.PipelineModel([add_k(k, "x", "y"), add_k(k, "y", "z")])


def predict_z(model, x: float) -> float:
    return model.transform({"x": [x]}).column("z")[0].as_py()


def vdir(root, v: int) -> str:
    return os.path.join(str(root), "versions", f"{v:012d}")


# ---- round trips -----------------------------------------------------------------------

def test_publish_load_round_trip_and_layout(tmp_path):
    store = ModelStore(str(tmp_path))
    assert store.versions() == [] and store.latest() is None and store.latest_version() is None
    with pytest.raises(LookupError, match="no valid version"):
        store.load()
    v1 = store.publish(add_k(1.5), metadata={"auc": 0.9, "note": "first"})
    v2 = store.publish(add_k(2.5))
    assert (v1, v2) == (1, 2) and store.versions() == [1, 2]

    mv = store.load(1)
    assert isinstance(mv, ModelVersion) and mv.version == 1
    assert mv.metadata == {"auc": 0.9, "note": "first"}
    assert isinstance(mv.model, AddK)
    assert mv.model.transform({"x": [1.0, 2.0]}).column("y").to_pylist() == [2.5, 3.5]
    assert store.load().version == 2 and store.latest().version == 2
    assert store.load(1).created_at <= store.load(2).created_at <= time.time()

    # layout: a saved stage plus _COMMITTED holding the sha256 of every other file
    d = vdir(tmp_path, 1)
    commit = json.loads(open(os.path.join(d, "_COMMITTED")).read())
    files = {}
    for dirpath, _, names in os.walk(d):
        for n in names:
            rel = os.path.relpath(os.path.join(dirpath, n), d).replace(os.sep, "/")
            if rel != "_COMMITTED":
                files[rel] = hashlib.sha256(open(os.path.join(dirpath, n), "rb").read()).hexdigest()
    assert commit["files"] == files and "metadata.json" in files and "data/0.arrow" in files
    assert commit["version"] == 1 and commit["metadata"] == {"auc": 0.9, "note": "first"}
    assert commit["class"] == "tests.test_model_store.AddK"
    # the version directory is a saved stage fl.load reads directly
    assert isinstance(fl.load(d), AddK)
    # the LATEST notification marker names the newest version
    assert json.loads(open(os.path.join(str(tmp_path), "LATEST")).read())["version"] == 2
    info = store.version_info(1)
    assert info["class"] == "tests.test_model_store.AddK" and info["metadata"]["auc"] == 0.9
    with pytest.raises(LookupError, match="no committed version 7"):
        store.load(7)


def test_pipeline_model_versions_round_trip(tmp_path):
    store = ModelStore(str(tmp_path))
    for k in (1.0, 2.0, 3.0):
        store.publish(pipeline(k), metadata={"k": k})
    for v, k in zip(store.versions(), (1.0, 2.0, 3.0)):
        mv = store.load(v)
        assert isinstance(mv.model, fl.PipelineModel) and len(mv.model.stages) == 2
        assert all(isinstance(s, AddK) for s in mv.model.stages)
        assert predict_z(mv.model, 10.0) == 10.0 + 2 * k
    # the nested stage files are covered by the checksums too
    commit = json.loads(open(os.path.join(vdir(tmp_path, 3), "_COMMITTED")).read())
    assert {"stages/000/data/0.arrow", "stages/001/data/0.arrow"} <= set(commit["files"])
    # a PipelineModel version serves through the LocalPredictor's fused row path
    p = fl.LocalPredictor(store.load().model)
    assert p.predict({"x": 1.0})["z"] == 7.0


def test_fsspec_url_store(tmp_path):
    url = f"memory://flowlearn-test-{uuid.uuid4().hex}/store"
    store = ModelStore(url, keep_last=2)
    for k in range(4):
        store.publish(pipeline(float(k)), metadata={"k": k})
    assert store.versions() == [3, 4]
    assert predict_z(store.load().model, 0.0) == 6.0
    # a fresh instance (no caches) reads the same store
    again = ModelStore(url)
    assert again.versions() == [3, 4] and again.load(3).metadata == {"k": 2}
    # tampering is detected on fsspec filesystems too
    fs = again._fs
    path = again._vpath(4) + "/stages/001/data/0.arrow"
    fs.pipe_file(path, fs.cat_file(path)[:-8] + b"\0" * 8)
    with pytest.raises(CorruptVersionError):
        again.load(4)
    assert again.load().version == 3


def test_publish_rejects_bad_input(tmp_path):
    store = ModelStore(str(tmp_path))
    with pytest.raises(TypeError, match="fitted Model or PipelineModel"):
        store.publish({"k": 1})
    with pytest.raises(TypeError, match="JSON-serializable"):
        store.publish(add_k(1), metadata={"bad": object()})
    with pytest.raises(ValueError, match="model data has not been set"):
        store.publish(AddK())
    with pytest.raises(ValueError, match="keep_last"):
        ModelStore(str(tmp_path), keep_last=0)
    assert store.versions() == []
    assert [n for n in os.listdir(os.path.join(str(tmp_path), "versions"))] == []   # no temp dirs left


# ---- atomicity and numbering ------------------------------------------------------------

_PUBLISHER = textwrap.dedent("""
    import json, os, sys, time
    sys.path.insert(0, sys.argv[1])
    from test_model_store import add_k
    from flowlearn.modelstream import ModelStore
    store, who, n, go = ModelStore(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    models = [add_k(who * 1000 + i) for i in range(n)]
    print("ready", flush=True)
    while not os.path.exists(go):          # all publishers start together
        time.sleep(0.001)
    got = [store.publish(m, metadata={"who": who, "seq": i}) for i, m in enumerate(models)]
    print(json.dumps(got), flush=True)
""")


def test_concurrent_publisher_processes_get_distinct_increasing_versions(tmp_path):
    n_proc, n_each = 3, 8
    root, go = tmp_path / "store", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _PUBLISHER, os.path.dirname(__file__), str(root),
                               str(w), str(n_each), str(go)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for w in range(n_proc)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready", p.stderr.read()
    go.write_text("go")
    results = {}
    for w, p in enumerate(procs):
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        results[w] = json.loads(out.strip().splitlines()[-1])
    everything = sorted(v for vs in results.values() for v in vs)
    assert everything == list(range(1, n_proc * n_each + 1))            # distinct, no gaps
    for vs in results.values():
        assert vs == sorted(vs) and len(set(vs)) == len(vs)            # each publisher: strictly increasing
    store = ModelStore(str(root))
    assert store.versions() == everything
    for w, vs in results.items():
        for i, v in enumerate(vs):                                       # each version holds what was published
            mv = store.load(v)
            assert mv.metadata == {"who": w, "seq": i}
            assert mv.model.transform({"x": [0.0]}).column("y")[0].as_py() == w * 1000 + i
    assert not [n for n in os.listdir(os.path.join(str(root), "versions")) if n.startswith(".")]


def test_torn_version_is_invisible_and_numbers_still_increase(tmp_path):
    store = ModelStore(str(tmp_path))
    store.publish(add_k(1))
    # a version directory with a whole stage but no _COMMITTED (a publisher that died)
    shutil.copytree(vdir(tmp_path, 1), vdir(tmp_path, 2))
    os.remove(os.path.join(vdir(tmp_path, 2), "_COMMITTED"))
    # and one whose _COMMITTED is not valid JSON / names the wrong version
    shutil.copytree(vdir(tmp_path, 1), vdir(tmp_path, 3))
    with open(os.path.join(vdir(tmp_path, 3), "_COMMITTED"), "w") as f:
        f.write('{"format": "flowlearn.model_version", "vers')
    shutil.copytree(vdir(tmp_path, 1), vdir(tmp_path, 4))      # its _COMMITTED says version 1
    reader = ModelStore(str(tmp_path))
    assert reader.versions() == [1]
    assert reader.latest().version == 1 and reader.load().version == 1
    with pytest.raises(LookupError):
        reader.load(2)
    assert store.publish(add_k(5)) == 5                        # never reuses a number a torn dir holds
    assert reader.versions() == [1, 5]


def test_corrupt_version_is_skipped_with_a_logged_error(tmp_path, caplog):
    store = ModelStore(str(tmp_path))
    store.publish(add_k(1))
    store.publish(add_k(2))
    data = os.path.join(vdir(tmp_path, 2), "data", "0.arrow")
    raw = bytearray(open(data, "rb").read())
    raw[-20] ^= 0xFF                                            # flip one byte
    open(data, "wb").write(bytes(raw))
    reader = ModelStore(str(tmp_path))
    with caplog.at_level(logging.ERROR, logger="flowlearn.modelstream"):
        mv = reader.load()
    assert mv.version == 1 and mv.model.transform({"x": [0.0]}).column("y")[0].as_py() == 1.0
    assert any("version 2 is corrupt" in r.getMessage() and "checksum mismatch" in r.getMessage()
               and r.levelno == logging.ERROR for r in caplog.records)
    assert reader.latest().version == 1
    with pytest.raises(CorruptVersionError, match="checksum mismatch in \\['data/0.arrow'\\]"):
        reader.load(2)
    # the corrupt version is still listed (it is committed) but never served
    assert reader.versions() == [1, 2]

    # an extra or a missing file is corruption too (persist would load an extra data/1.arrow)
    store.publish(add_k(3))
    shutil.copy(os.path.join(vdir(tmp_path, 3), "data", "0.arrow"), os.path.join(vdir(tmp_path, 3), "data", "1.arrow"))
    with pytest.raises(CorruptVersionError, match="unexpected files \\['data/1.arrow'\\]"):
        reader.load(3)
    store.publish(add_k(4))
    os.remove(os.path.join(vdir(tmp_path, 4), "metadata.json"))
    with pytest.raises(CorruptVersionError, match="missing files \\['metadata.json'\\]"):
        reader.load(4)
    assert reader.load().version == 1


def test_keep_last_retention_never_deletes_the_latest(tmp_path):
    store = ModelStore(str(tmp_path), keep_last=3)
    for k in range(6):
        store.publish(add_k(k))
    assert store.versions() == [4, 5, 6]
    assert sorted(os.listdir(os.path.join(str(tmp_path), "versions"))) == [f"{v:012d}" for v in (4, 5, 6)]
    assert store.load().version == 6
    one = ModelStore(str(tmp_path), keep_last=1)
    assert one.publish(add_k(9)) == 7                            # numbering continues past deleted versions
    assert one.versions() == [7] and one.load().model.transform({"x": [0.0]}).column("y")[0].as_py() == 9.0


def test_rollback_republishes_an_old_version(tmp_path):
    store = ModelStore(str(tmp_path))
    store.publish(pipeline(1.0), metadata={"auc": 0.91})
    store.publish(pipeline(2.0), metadata={"auc": 0.55})
    new = store.rollback(1)
    assert new == 3 and store.versions() == [1, 2, 3]
    mv = store.load()
    assert mv.version == 3 and mv.metadata == {"auc": 0.91, "rollback_of": 1}
    assert predict_z(mv.model, 0.0) == 2.0
    assert store.rollback(3, metadata={"note": "again"}) == 4
    assert store.load(4).metadata == {"auc": 0.91, "note": "again", "rollback_of": 3}
    with pytest.raises(LookupError):
        store.rollback(42)


def test_watch_yields_new_versions_in_order(tmp_path):
    store = ModelStore(str(tmp_path))
    store.publish(add_k(1))
    w = store.watch(poll_interval=0.05)
    it = iter(w)
    assert next(it).version == 1                                  # starts with the current newest
    store.publish(add_k(2))
    store.publish(add_k(3))
    assert [next(it).version, next(it).version] == [2, 3]
    w.close()
    assert list(it) == []
    # latest_only skips straight to the newest of what arrived together; `after` skips old ones
    got = []
    w2 = store.watch(poll_interval=0.05, after=3, latest_only=True, callback=got.append)
    for k in (4, 5, 6):
        store.publish(add_k(k))
    deadline = time.monotonic() + 60
    while (not got or got[-1].version != 6) and time.monotonic() < deadline:
        time.sleep(0.01)
    w2.close()
    assert got[-1].version == 6 and all(a.version < b.version for a, b in zip(got, got[1:]))
    assert all(mv.version > 3 for mv in got)


# ---- the CLI ---------------------------------------------------------------------------

def _cli(*argv):
    parser = argparse.ArgumentParser(prog="flowlearn")
    add_models_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_cli_models_ls_show_rollback(tmp_path):
    store = ModelStore(str(tmp_path))
    store.publish(pipeline(1.0), metadata={"auc": 0.91})
    store.publish(add_k(2.0), metadata={"auc": 0.5})
    code, out, _ = _cli("models", "ls", str(tmp_path))
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].split() == ["VERSION", "CREATED_AT", "CLASS", "METADATA"]
    assert lines[1].split()[0] == "1" and "PipelineModel" in lines[1] and '{"auc": 0.91}' in lines[1]
    assert lines[2].split()[0] == "2" and "AddK" in lines[2]

    code, out, _ = _cli("models", "show", str(tmp_path), "1")
    assert code == 0 and "version:    1" in out and "PipelineModel" in out
    assert "[0] AddK" in out and "[1] AddK" in out and '"input_col": "y"' in out and "model data 0: 1 rows; k: double" in out
    code, out, _ = _cli("models", "show", str(tmp_path), "--json")
    assert code == 0 and json.loads(out)["version"] == 2

    code, out, _ = _cli("models", "rollback", str(tmp_path), "1", "--note", "bad auc")
    assert code == 0 and "republished as version 3" in out
    assert store.load().metadata == {"auc": 0.91, "note": "bad auc", "rollback_of": 1}

    data = os.path.join(vdir(tmp_path, 2), "data", "0.arrow")
    open(data, "ab").write(b"junk")
    code, out, _ = _cli("models", "ls", str(tmp_path), "--verify", "--json")
    status = {json.loads(line)["version"]: json.loads(line)["status"] for line in out.splitlines()}
    assert code == 0 and status[1] == "ok" and status[3] == "ok" and status[2].startswith("CORRUPT")

    code, _, err = _cli("models", "show", str(tmp_path), "9")
    assert code == 1 and "no committed version 9" in err
    code, _, err = _cli("models", "ls", str(tmp_path / "nowhere"))
    assert code == 1 and "is not a model store" in err


def test_readers_racing_retention_never_see_errors(tmp_path, caplog):
    """keep_last=1 deletes the previous version on every publish while readers load the latest."""
    store = ModelStore(str(tmp_path), keep_last=1)
    store.publish(add_k(0), metadata={"k": 0})
    reader = ModelStore(str(tmp_path))
    stop, problems, loaded = threading.Event(), [], []

    def read():
        while not stop.is_set():
            try:
                mv = reader.load()
                assert mv.model.transform({"x": [0.0]}).column("y")[0].as_py() == mv.metadata["k"]
                loaded.append(mv.version)
            except Exception as e:  # noqa: BLE001
                problems.append(e)

    with caplog.at_level(logging.WARNING, logger="flowlearn.modelstream"):
        threads = [threading.Thread(target=read) for _ in range(2)]
        for t in threads:
            t.start()
        for k in range(1, 40):
            store.publish(add_k(k), metadata={"k": k})
        # the readers raced every publish above; on a loaded machine they may have been scheduled
        # rarely, so let them finish at least 11 loads (on the final version) before stopping them
        deadline = time.monotonic() + 60
        while len(loaded) <= 10 and not problems and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.set()
        for t in threads:
            t.join(10)
    assert problems == [] and len(loaded) > 10, (problems[:3], len(loaded))
    assert [r.getMessage() for r in caplog.records] == []
    assert reader.versions() == [40]
