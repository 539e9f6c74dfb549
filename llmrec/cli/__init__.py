"""The ``llmrec`` command line: the only place where user input becomes config objects.

Each command group lives in its own module exposing ``register(subparsers)``; this module wires
them together, turns every :class:`~llmrec.errors.LlmrecError` into a one-line message, switches
progress reporting on for the commands that ask for it (``set_defaults(progress=True)``) and
ends a Ctrl-C with the line the command set (``set_defaults(interrupted=...)``): what was kept.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import NoReturn

from llmrec.errors import LlmrecError

#: modules that each add one or more subcommands
COMMAND_MODULES = (
    "llmrec.cli.data_cmd",
    "llmrec.cli.models_cmd",
    "llmrec.cli.run_cmd",
    "llmrec.cli.compare_cmd",
    "llmrec.cli.reproduce_cmd",
    "llmrec.cli.serve_cmd",
    "llmrec.cli.batch_cmd",
)


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one ``llmrec: error: …`` line, like every other error
    (argparse's own prints the whole usage block first). Sub-commands inherit the class."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("llmrec").strip()
        where = f"{command}: " if command else ""
        self.exit(2, f"llmrec: error: {where}{message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from llmrec import __version__

    parser = _Parser(
        prog="llmrec",
        description="Language models in recommender systems, measured side by side.",
    )
    parser.add_argument("--version", action="version", version=f"llmrec {__version__}")
    # what Ctrl-C keeps: each command that keeps (or loses) something says so in its own words
    parser.set_defaults(interrupted="cached work is kept, run the command again to resume")
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
    # OpenMP's default spin-wait collapses torch and llama.cpp on shared cores (decode steps
    # many times slower; docs/benchmarks.md); passive waiting is the safe default. It must
    # be set before torch loads, so it is set here, and a user's own setting wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _progress(args), _engines():
            code = args.func(args)
    except LlmrecError as exc:
        print(f"llmrec: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:
            raise  # not a file-system fault with a path to name: a bug, keep its traceback
        print(f"llmrec: error: {_file_fault(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"llmrec: interrupted; {args.interrupted}", file=sys.stderr)
        return 130
    return int(code or 0)


@contextmanager
def _engines() -> Iterator[None]:
    """Close what ``--engine ray`` opened (actors, a private Ray instance) when the command
    ends, however it ends; nothing is imported when no engine was opened."""
    try:
        yield
    finally:
        from llmrec import engine

        engine.shutdown()


def _progress(args: argparse.Namespace) -> AbstractContextManager[None]:
    """Progress on stderr for the commands that report it (``set_defaults(progress=True)``),
    unless ``--quiet``; estimates use the rates measured by earlier runs."""
    if not getattr(args, "progress", False) or getattr(args, "quiet", False):
        return nullcontext()
    from llmrec import paths, progress

    return progress.reporting(rates=paths.progress_rates(), prefix="[llmrec] ")


def _file_fault(exc: OSError) -> str:
    """A file-system failure as one line naming the path(s), e.g.
    ``runs/compare/report.html: Is a directory``."""
    where = str(exc.filename)
    if exc.filename2 is not None:
        where += f" -> {exc.filename2}"
    return f"{where}: {exc.strerror or type(exc).__name__}"
