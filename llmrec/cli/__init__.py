"""The ``llmrec`` command line: the only place where user input becomes config objects.

Each command group lives in its own module exposing ``register(subparsers)``; this module wires
them together and turns every :class:`~llmrec.errors.LlmrecError` into a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from llmrec.errors import LlmrecError

#: modules that each add one or more subcommands
COMMAND_MODULES = (
    "llmrec.cli.data_cmd",
    "llmrec.cli.models_cmd",
    "llmrec.cli.run_cmd",
    "llmrec.cli.compare_cmd",
    "llmrec.cli.serve_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    from llmrec import __version__

    parser = argparse.ArgumentParser(
        prog="llmrec",
        description="Language models in recommender systems, measured side by side.",
    )
    parser.add_argument("--version", action="version", version=f"llmrec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # OpenMP's default spin-wait collapses torch and llama.cpp on shared cores (a decode step
    # 1.9 s instead of 0.05 s was measured here); passive waiting is the safe default. It must
    # be set before torch loads, so it is set here, and a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except LlmrecError as exc:
        print(f"llmrec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "llmrec: interrupted; cached work is kept, run the command again to resume",
            file=sys.stderr,
        )
        return 130
    return int(code or 0)
