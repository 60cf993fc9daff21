"""The ``flowlearn`` command: ``version``, ``demo``, ``models``, ``run``, ``serve``.

Example:
    $ flowlearn version
    $ flowlearn demo --out demo-output
    $ flowlearn models ls ./model-store
    $ flowlearn run job.py --checkpoint-dir ckpt
    $ flowlearn serve ./model-store --port 8080
"""
from __future__ import annotations

import argparse
import logging
import sys

from flowlearn._version import __version__


def _version(args: argparse.Namespace) -> int:
    import numpy
    import pyarrow

    print(f"flowlearn {__version__} (numpy {numpy.__version__}, pyarrow {pyarrow.__version__}, "
          f"python {sys.version.split()[0]})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from flowlearn.cli.demo import run_demo

    return run_demo(out_dir=args.out, quick=args.quick)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowlearn",
        description="flowlearn: machine learning where a batch is a bounded stream.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("version", help="print the flowlearn version")
    p.set_defaults(func=_version)
    p = sub.add_parser("demo", help="run the end-to-end demo on the embedded engine")
    p.add_argument("--out", default="demo-output", help="directory for the saved models and plots")
    p.add_argument("--quick", action="store_true", help="smaller data, for tests")
    p.set_defaults(func=_demo)
    from flowlearn.cli.models import add_models_parser
    from flowlearn.cli.run import add_run_parser
    from flowlearn.cli.serve import add_serve_parser

    add_models_parser(sub)
    add_run_parser(sub)
    add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
