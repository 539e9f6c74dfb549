"""``llmrec batch encode|tags|rank``: file-to-file precompute jobs (:mod:`llmrec.batch`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from llmrec.cli._format import add_runtime, add_verbosity, print_json, runtime_flags, status, table
from llmrec.config import validated
from llmrec.errors import ConfigError

INTERRUPTED = (
    "the parts already written are kept; run the same command again to compute only the "
    "missing ones"
)


def register(sub: argparse._SubParsersAction) -> None:
    batch = sub.add_parser(
        "batch", help="precompute vectors, tags or rankings for a Parquet file, resumably"
    )
    jobs = batch.add_subparsers(dest="job", metavar="JOB", required=True)
    encode = jobs.add_parser("encode", help="texts to vectors (id + vector columns)")
    _add_common(encode, part_rows=1024)
    _add_texts(encode)
    encode.add_argument("--encoder", default="minilm-l6", help="LM spec (minilm-l6, st:PATH, ...)")
    encode.add_argument("--pooling", choices=["mean", "last"], help="causal-LM pooling")
    encode.add_argument("--max-tokens", type=int, help="token budget per text")
    encode.add_argument("--batch-size", type=int, default=64, help="texts per forward pass")

    tags = jobs.add_parser("tags", help="texts to LM-generated tags (id + tags columns)")
    _add_common(tags, part_rows=256)
    _add_texts(tags)
    tags.add_argument("--lm", default="smollm2-135m", help="generative LM spec")
    tags.add_argument("--n-tags", type=int, default=5, help="tags asked for per row")
    tags.add_argument("--retries", type=int, default=2, help="sampled retries of unparsed answers")
    tags.add_argument("--min-count", type=int, default=2, help="rows a vocabulary tag needs")
    tags.add_argument("--noun", default="movie", help="what the rows are, in prompts")
    tags.add_argument("--vocabulary", type=Path, help="a fixed vocabulary: a file, one tag a line")

    rank = jobs.add_parser("rank", help="top-K items per user from a saved model")
    _add_common(rank, part_rows=256)
    rank.add_argument("--model", type=Path, required=True, help="a saved model folder (RUN/model)")
    rank.add_argument(
        "--user-column", default="user", help="column of user indices (with --dataset: user ids)"
    )
    rank.add_argument(
        "--dataset",
        help="the model's dataset (name or path): users and items as its ids, and every item "
        "a user has in it left out, as llmrec serve answers",
    )
    rank.add_argument("-k", type=int, default=10, help="items per user")


def _add_common(parser: argparse.ArgumentParser, *, part_rows: int) -> None:
    parser.add_argument("--input", type=Path, required=True, help="a Parquet file")
    parser.add_argument("--out", type=Path, required=True, help="the output folder")
    parser.add_argument(
        "--part-rows",
        type=int,
        default=part_rows,
        help=f"rows per part: per LM call, per output file (default {part_rows})",
    )
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")
    add_runtime(parser)
    add_verbosity(parser)
    parser.set_defaults(func=cmd_batch, interrupted=INTERRUPTED)


def _add_texts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--id-column", default="id", help="the column naming each row")
    parser.add_argument("--text-column", default="text", help="the column holding the text")
    parser.add_argument(
        "--template", help="str.format template over columns, e.g. '{title} ({year})'"
    )


def build_job(args: argparse.Namespace) -> Any:
    from llmrec.batch.jobs import EncodeJob, RankJob, TagsJob

    raw: dict[str, Any] = {"part_rows": args.part_rows}
    if args.job == "rank":
        raw.update(model=str(args.model), user_column=args.user_column, k=args.k,
                   dataset=args.dataset)  # fmt: skip
        return validated(RankJob, raw, "invalid batch rank job")
    raw.update(id_column=args.id_column, text_column=args.text_column,
               item_template=args.template)  # fmt: skip
    if args.job == "encode":
        raw.update(encoder=args.encoder, pooling=args.pooling, max_tokens=args.max_tokens,
                   batch_size=args.batch_size)  # fmt: skip
        return validated(EncodeJob, raw, "invalid batch encode job")
    raw.update(
        lm=args.lm,
        tags={
            "n_tags": args.n_tags,
            "retries": args.retries,
            "min_count": args.min_count,
            "noun": args.noun,
        },
        vocabulary=_vocabulary(args.vocabulary),
    )
    return validated(TagsJob, raw, "invalid batch tags job")


def _vocabulary(path: Path | None) -> list[str] | None:
    if path is None:
        return None
    from llmrec._io import read_text_file

    words = [line.strip() for line in read_text_file(path, "vocabulary").splitlines()]
    if not any(words):
        raise ConfigError(f"{path}: the vocabulary is empty")
    return [w for w in words if w]


def cmd_batch(args: argparse.Namespace) -> int:
    from llmrec.batch import run_batch
    from llmrec.runtime import RuntimeOptions

    job = build_job(args)
    runtime = validated(RuntimeOptions, runtime_flags(args), "invalid runtime options")
    manifest = run_batch(job, args.input, args.out, runtime=runtime, log=status(args))
    if args.json:
        print_json(manifest)
        return 0
    usage = manifest.get("usage_this_run") or {}
    row = {
        "job": job.kind,
        "rows": manifest.get("rows"),
        "computed now": manifest.get("rows_this_run", 0),
        "engine": (manifest.get("engine") or {}).get("kind"),
        "LM calls now": int(usage.get("calls", 0)),
        "seconds": manifest.get("seconds_this_run"),
    }
    print(table([row]))
    print(f"output: {args.out} (complete)")
    return 0
