"""The ``flowlearn`` command: ``version``, ``demo``, ``models``, ``run``, ``serve``, ``dashboard``.

argparse conventions: ``flowlearn`` without a command prints the usage to stderr and exits 2, as
does any usage error; ``--help`` on the command and on every subcommand describes it.

Example:
    $ flowlearn version
    $ flowlearn demo --out demo-output
    $ flowlearn models ls ./model-store
    $ flowlearn run job.py --checkpoint-dir ckpt
    $ flowlearn serve ./model-store --port 8080
    $ flowlearn dashboard ./model-store --metrics-dir metrics
"""
from __future__ import annotations

import argparse
import logging
import sys
import types

from flowlearn._version import __version__


def _version(args: argparse.Namespace) -> int:
    import numpy
    import pyarrow

    print(f"flowlearn {__version__} (numpy {numpy.__version__}, pyarrow {pyarrow.__version__}, "
          f"python {sys.version.split()[0]})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from flowlearn.cli.demo import run_demo

    return run_demo(out_dir=args.out, quick=args.quick, progress=not args.no_progress)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowlearn",
        description="flowlearn: machine learning where a batch is a bounded stream.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("version", help="print the flowlearn version",
                       description="Print the versions of flowlearn, NumPy, PyArrow and Python.")
    p.set_defaults(func=_version)
    p = sub.add_parser(
        "demo", help="run the end-to-end demo on the embedded engine",
        description="The whole story in about a minute on the embedded engine: batch-train a pipeline (scaling, "
                    "feature hashing, logistic regression) on synthetic click events, save and reload it, publish it "
                    "to a model store, keep training it online with FTRL while the world drifts, hot-swap every new "
                    "version into a predictor that scores live traffic, and print windowed AUC and log loss next to "
                    "the frozen batch model. Writes the models and a metrics plot (PNG, needs the demo extra) to "
                    "--out. Progress bars go to stderr.")
    p.add_argument("--out", default="demo-output", help="directory for the saved models and plots")
    p.add_argument("--quick", action="store_true", help="smaller data, for tests")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.set_defaults(func=_demo)
    from flowlearn.cli.dashboard import add_dashboard_parser
    from flowlearn.cli.models import add_models_parser
    from flowlearn.cli.run import add_run_parser
    from flowlearn.cli.serve import add_serve_parser

    add_models_parser(sub)
    add_run_parser(sub)
    add_serve_parser(sub)
    add_dashboard_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: a command is required (one of version, demo, models, run, serve); "
              f"see '{parser.prog} --help'", file=sys.stderr)
        return 2
    return int(args.func(args) or 0)


def run_command(command: str, argv: list[str] | None = None) -> int:
    """``python -m flowlearn.cli.<command> ...``: one command on its own (the command's name may be
    left out of ``argv``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return main(argv if command in argv[:2] else [command, *argv])


class _Command(types.ModuleType):
    """This module is also the command: importing ``flowlearn.cli.main`` binds the package attribute
    ``flowlearn.cli.main`` to the module, where the entry point ``flowlearn.cli:main`` looks for the
    function, so calling the module runs :func:`main`."""

    def __call__(self, argv: list[str] | None = None) -> int:
        return main(argv)


sys.modules[__name__].__class__ = _Command

if __name__ == "__main__":
    sys.exit(main())
