"""The flowlearn command: help, version, and the end-to-end demo (quick mode)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

import flowlearn as fl

CLI = [sys.executable, "-m", "flowlearn.cli.main"]


def _run(*args, timeout=60):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_command():
    out = _run("--help")
    assert out.returncode == 0
    # each command on its own line of the listing, with a description after it (not just a substring)
    listed = re.findall(r"^ {4}(\w+) {2,}\S", out.stdout, flags=re.M)
    assert listed == ["version", "demo", "models", "run", "serve", "dashboard"], out.stdout


def test_version():
    out = _run("version")
    assert out.returncode == 0 and out.stdout.startswith(f"flowlearn {fl.__version__}")


def test_unknown_command_is_an_error():
    out = _run("frobnicate")
    assert out.returncode == 2 and "invalid choice" in out.stderr


def test_bare_command_prints_usage_to_stderr_and_exits_2():
    out = _run()
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("usage: flowlearn") and "error: a command is required" in out.stderr
    assert "RuntimeWarning" not in out.stderr   # python -m flowlearn.cli.main imports the module once


def test_usage_errors_exit_2():
    for args in (["demo", "--bogus"], ["models"], ["models", "show"], ["run"], ["run", "job.py",
                                                                                "--checkpoint-interval", "0"]):
        out = _run(*args)
        assert out.returncode == 2 and "usage: flowlearn" in out.stderr, (args, out.stderr)


def test_every_command_and_subcommand_has_a_description():
    import argparse

    from flowlearn.cli.main import build_parser

    def walk(parser, path):
        assert parser.description, f"'{path}' has no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for name, sub in action.choices.items():
                    assert helps.get(name), f"'{path} {name}' has no help line"
                    walk(sub, f"{path} {name}")

    walk(build_parser(), "flowlearn")
    out = _run("demo", "--help")
    assert out.returncode == 0 and "batch-train a pipeline" in " ".join(out.stdout.split())


@pytest.mark.slow
def test_demo_quick_runs_end_to_end(tmp_path):
    out = _run("demo", "--quick", "--out", str(tmp_path), timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    # progress bars on stderr (tqdm, the demo extra): the batch fit's iterations and the live rows
    assert "[batch]   L-BFGS" in out.stderr and "[online]  live rows scored" in out.stderr
    text = out.stdout
    # every part of the story is there
    for needle in ("[batch]   trained on", "held-out AUC", "LocalPredictor on one row", "[store]   published",
                   "model versions published", "publish -> served latency", "best achievable log loss"):
        assert needle in text
    assert os.path.getsize(tmp_path / "metrics.png") > 10_000
    # the store holds the batch version plus online versions, and they load
    store = fl.ModelStore(str(tmp_path / "model-store"))
    versions = store.versions()
    assert len(versions) >= 5
    assert store.version_info(versions[0])["metadata"]["kind"] == "batch"
    assert isinstance(store.load().model, fl.PipelineModel)
    # after the drift the online model must beat the frozen batch model (the point of the demo)
    summary = text.rsplit("summary", 1)[1]
    online = float(summary.split("live log loss, online FTRL")[1].split()[0])
    frozen = float(summary.split("live log loss, frozen batch")[1].split()[0])
    best = float(summary.split("best achievable log loss")[1].split()[0])
    assert best < online < frozen


def test_the_entry_point_is_callable_whichever_import_came_first():
    import flowlearn.cli.main  # noqa: F401 - binds flowlearn.cli.main to the module
    from flowlearn.cli import main

    assert callable(main)
    assert main(["version"]) == 0
