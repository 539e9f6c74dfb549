"""``llmrec reproduce NAME``: a paper's protocol beside llmrec's strict one, in one table.

llmrec reproduce hstu-ml1m [--model DIR] [--epochs N]
llmrec reproduce llamarec-ml100k
llmrec reproduce llmrank-ml1m [--users N] [--lm NAME | --no-lm]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from llmrec.cli._format import add_runtime, add_verbosity, print_json, runtime_flags, status, table

ANCHOR_NAMES = ("hstu-ml1m", "llamarec-ml100k", "llmrank-ml1m")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="run a paper's protocol (split, masking, candidates) beside llmrec's strict one",
        description="Paper figures, ours under the paper's protocol, and ours under llmrec's "
        "strict protocol (full ranking, every known item masked), in one table.",
    )
    parser.add_argument("anchor", metavar="NAME", help=f"one of {', '.join(ANCHOR_NAMES)}")
    parser.add_argument("--model", type=Path, help="a saved SASRec to score instead of training")
    parser.add_argument("--epochs", type=int, help="most SASRec epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--users", type=int, default=200, help="user sample of the candidate protocol (0: all)"
    )
    parser.add_argument("--lm", default="smollm2-135m", help="zero-shot LM ranker (llmrank-ml1m)")
    parser.add_argument("--no-lm", action="store_true", help="no LM ranker row")
    parser.add_argument("--dataset", help="another dataset under the same protocol")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    add_runtime(parser)
    add_verbosity(parser)
    parser.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from llmrec.config import validated
    from llmrec.reproduce import ReproduceConfig, reproduce
    from llmrec.runtime import RuntimeOptions

    raw = {
        "anchor": args.anchor,
        "dataset": args.dataset,
        "seed": args.seed,
        "epochs": args.epochs,
        "model_dir": args.model,
        "users": args.users,
        "lm": None if args.no_lm else args.lm,
        "runtime": RuntimeOptions().replace(**runtime_flags(args)),
    }
    config = validated(ReproduceConfig, raw, "reproduce options")
    anchor = config.spec()
    rows = reproduce(config, data_dir=args.data_dir, log=status(args))
    if args.json:
        print_json({"anchor": anchor.name, "protocol": anchor.protocol, "rows": rows})
        return 0
    scale = f" (figures x {anchor.scale:g})" if anchor.scale != 1 else ""
    print(f"{anchor.name}: {anchor.source}\nprotocol: {anchor.protocol}{scale}")
    columns = ["model", "protocol", "users", *anchor.metrics, "fit_cpu_s"]
    print(table(rows, columns))
    return 0
