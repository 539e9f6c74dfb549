"""Plain-text tables, JSON output and status lines shared by the CLI commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from llmrec import progress
from llmrec._io import dumps_json


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """``--quiet`` / ``--verbose`` for a command that reports progress (on stderr)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--quiet", "-q", action="store_true", help="no progress and no status lines on stderr"
    )
    group.add_argument(
        "--verbose", "-v", action="store_true", help="also the full config and other details"
    )
    parser.set_defaults(progress=True)


def add_runtime(parser: argparse.ArgumentParser) -> None:
    """``--device`` / ``--dtype`` / ``--threads`` / ``--engine`` and the Ray options: runtime
    options (never part of a model's config or of a compare stage key); they override a
    config's ``runtime:`` section."""
    g = parser.add_argument_group("runtime options (how models run, not what they are)")
    g.add_argument("--device", help="auto (a GPU when torch sees one), cpu, cuda or cuda:N")
    g.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
    g.add_argument("--threads", type=int, help="torch threads while fitting and scoring")
    g.add_argument(
        "--engine",
        choices=["local", "ray"],
        help="where LM encoding and ranking run: this process (default) or Ray actors",
    )
    g.add_argument(
        "--ray-address",
        help="local (a private Ray instance), auto (this machine's cluster) or host:port",
    )
    g.add_argument("--ray-actors", type=int, help="Ray actors per LM (default 2)")
    g.add_argument("--ray-actor-cpus", type=float, help="CPUs each actor reserves (default 1)")
    g.add_argument(
        "--ray-actor-gpus",
        type=float,
        help="GPUs each actor reserves, a fraction to share one (default: from --device: none "
        "on the CPU, else the cluster's GPUs shared between the actors)",
    )


RUNTIME_FLAGS = ("device", "dtype", "threads", "engine", "ray_address", "ray_actors",
                 "ray_actor_cpus", "ray_actor_gpus")  # fmt: skip


def runtime_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The runtime options given on the command line (only those given)."""
    given = {k: getattr(args, k, None) for k in RUNTIME_FLAGS}
    return {k: v for k, v in given.items() if v is not None}


def status(args: argparse.Namespace) -> Callable[[str], None]:
    """Where a command's status lines go: stderr as ``[llmrec] …`` (above a live progress bar),
    or nowhere with ``--quiet``."""
    if getattr(args, "quiet", False):
        return lambda _msg: None

    def say(message: str) -> None:
        if progress.is_enabled():
            progress.write(message)
        else:
            print(f"[llmrec] {message}", file=sys.stderr, flush=True)

    return say


def format_value(value: Any) -> str:
    if value is None:  # an undefined metric read back from JSON
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A fixed-width text table of ``rows`` (dicts) with a header line."""
    if not rows:
        return "(no rows)"
    cols = list(columns) if columns is not None else list(rows[0].keys())
    cells = [[format_value(row.get(c, "")) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    return "\n".join(lines)


def print_json(data: Any) -> None:
    """``data`` as strict JSON on stdout: undefined numbers are ``null`` (never ``NaN``), and a
    value JSON has no type for is written as its string."""
    sys.stdout.write(dumps_json(data, default=str) + "\n")
