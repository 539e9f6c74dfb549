"""``llmrec models``: list the offline models, show one, prepare one (convert its GGUF once).

llmrec models [--json]
llmrec models show NAME [--json]
llmrec models prepare NAME
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from llmrec.cli._format import print_json


def register(subparsers: Any) -> None:
    """Add the ``models`` command and its sub-commands to the top-level parser."""
    parser = subparsers.add_parser(
        "models",
        help="list the offline language models and whether they are installed",
        description="List the offline language models that PyPI packages ship.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=_list)
    sub = parser.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    show = sub.add_parser("show", help="details of one model")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(func=_show)
    prepare = sub.add_parser(
        "prepare", help="load a model once (assembles and converts GGUF files into the cache)"
    )
    prepare.add_argument("name")
    prepare.set_defaults(func=_prepare)


def _list(args: argparse.Namespace) -> int:
    from llmrec.lm.registry import list_models

    rows = list_models()
    if args.json:
        print_json([r.as_dict() for r in rows])
        return 0
    print(f"{'name':<14} {'kind':<8} {'size MB':>8}  {'installed':<9}  package")
    for r in rows:
        installed = "yes" if r.installed else "no"
        print(f"{r.name:<14} {r.kind:<8} {r.size_mb:>8.1f}  {installed:<9}  {r.package}")
    missing = [r for r in rows if not r.installed]
    for r in missing:
        print(f"  to install {r.name}: {r.install_hint}")
    print("Other specs: hf:PATH, gguf:PATH, st:PATH, llamacpp:PATH|NAME, openai:URL#MODEL, fake")
    return 0


def _show(args: argparse.Namespace) -> int:
    from llmrec.errors import ConfigError
    from llmrec.lm.registry import list_models

    rows = {r.name: r for r in list_models()}
    if args.name not in rows:
        raise ConfigError(f"unknown model {args.name!r}; known: {', '.join(rows)}")
    info = rows[args.name].as_dict()
    if args.json:
        print_json(info)
    else:
        for key, value in info.items():
            print(f"{key:<13} {value}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from llmrec.lm.registry import load_lm

    start = time.perf_counter()
    lm = load_lm(args.name)
    seconds = time.perf_counter() - start
    print(f"{args.name}: ready as {lm.model_id} in {seconds:.1f} s")
    lm.close()
    return 0
