"""Vector retrieval at catalogue scale: exact vs HNSW vs IVF on synthetic item vectors.

The vectors imitate text embeddings: ``n`` unit vectors of width 384 drawn around
``n_clusters`` topic centres, each a centre plus a low-rank (``rank``-dimensional) topic
variation plus a little isotropic noise, then L2-normalised. Queries are fresh draws from the
same mixture. (Uniform random vectors in 384-d have no neighbourhood structure; no ANN index
reaches high recall on them cheaply, and no embedding model produces them.)

For each index: build time, size on disk (``faiss.write_index``), and for each search effort
(HNSW ``ef_search`` / IVF ``nprobe``) recall@10 against exact search and per-query latency
(one query per call, one thread; median and p99 over ``n_queries`` queries). Run::

    OMP_WAIT_POLICY=PASSIVE nice -n 10 .venv/bin/python benchmarks/bench_vector_index.py \
        --n 1000000 --kinds hnsw ivf

Writes ``benchmarks/results/bench_vector_index.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from llmrec.paradigms.embeddings.index import IndexConfig, VectorIndex, normalize

RESULTS = Path(__file__).resolve().parent / "results" / "bench_vector_index.json"


def clustered_vectors(
    n: int, dim: int, *, n_clusters: int, rank: int, spread: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centres, bases, vectors): ``(n, dim)`` float32 unit vectors, made in chunks.

    Each basis row has norm ``spread``; a vector's topic variation has norm about
    ``spread * sqrt(rank)`` against a unit centre.
    """
    rng = np.random.default_rng(seed)
    centres = normalize(rng.standard_normal((n_clusters, dim)).astype(np.float32))
    bases = rng.standard_normal((n_clusters, rank, dim)).astype(np.float32)
    bases *= spread / np.sqrt(dim)
    return centres, bases, draw(n, centres, bases, rng=rng)


def draw(n: int, centres: np.ndarray, bases: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors: centre + low-rank variation + isotropic noise of norm ~0.1."""
    dim = centres.shape[1]
    rank = bases.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        cluster = rng.integers(0, len(centres), m)
        z = rng.standard_normal((m, rank)).astype(np.float32)
        x = centres[cluster] + np.einsum("mr,mrd->md", z, bases[cluster])
        x += 0.1 * rng.standard_normal((m, dim)).astype(np.float32) / np.sqrt(dim)
        out[start : start + m] = normalize(x)
    return out


def latencies_ms(index: VectorIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-query wall time in ms (one query per call) and the ``(q, k)`` ids found."""
    times = np.empty(len(queries))
    found = np.empty((len(queries), k), dtype=np.int64)
    for i in range(len(queries)):
        start = time.perf_counter()
        _, ids = index.search(queries[i : i + 1], k)
        times[i] = (time.perf_counter() - start) * 1000.0
        found[i] = ids[0]
    return times, found


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits) / truth.shape[1])


def build_or_load(kind: str, x: np.ndarray, args: argparse.Namespace) -> tuple[VectorIndex, dict]:
    """Build the index (saving it and its build facts in ``--workdir``) or load a saved one."""
    path = args.workdir / f"{kind}-{args.n}.faiss"
    facts_path = path.with_suffix(".build.json")
    if args.reuse and path.is_file() and facts_path.is_file():
        return VectorIndex.load(path), json.loads(facts_path.read_text())
    config = IndexConfig(
        kind=kind,  # type: ignore[arg-type]
        hnsw_m=args.hnsw_m,
        ef_construction=args.ef_construction,
        ivf_nlist=args.nlist,
        n_threads=args.build_threads,
    )
    print(f"[{kind}] building on {len(x)} vectors ...", flush=True)
    index = VectorIndex(config).build(x)
    print(f"[{kind}] built in {index.build_seconds:.1f} s", flush=True)
    index.save(path)
    start = time.perf_counter()
    VectorIndex.load(path)
    facts = {
        "kind": kind,
        "config": config.model_dump(),
        "build_s": index.build_seconds,
        "size_bytes": path.stat().st_size,
        "load_s": time.perf_counter() - start,
    }
    facts_path.write_text(json.dumps(facts))
    return index, facts


def bench_search(
    index: VectorIndex, queries: np.ndarray, truth: np.ndarray, args: argparse.Namespace
) -> list[dict]:
    """Recall and single-query latency (one thread) at each search effort."""
    import faiss

    faiss.omp_set_num_threads(1)
    efforts = {"flat": [0], "hnsw": args.ef, "ivf": args.nprobe}[index.kind]
    rows = []
    for effort in efforts:
        if index.kind == "hnsw":
            index.set_search(ef_search=effort)
        elif index.kind == "ivf":
            index.set_search(nprobe=effort)
        runs = [latencies_ms(index, queries, args.k) for _ in range(args.repeats)]
        row = {
            "effort": effort,
            "recall@10": recall_at(runs[0][1], truth),
            "p50_ms": float(np.median([np.percentile(t, 50) for t, _ in runs])),
            "p99_ms": float(np.median([np.percentile(t, 99) for t, _ in runs])),
            "p99_ms_each_repeat": [float(np.percentile(t, 99)) for t, _ in runs],
        }
        rows.append(row)
        print(f"[{index.kind}] {row}", flush=True)
    faiss.omp_set_num_threads(args.build_threads)
    return rows


def exact_truth(x: np.ndarray, queries: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    path = args.workdir / f"truth-{args.n}-{len(queries)}.npy"
    if args.reuse and path.is_file():
        return np.load(path)
    exact = VectorIndex(IndexConfig(kind="flat", n_threads=args.build_threads)).build(x)
    _, truth = exact.search(queries, args.k)
    np.save(path, truth)
    return truth


def exact_latency(x: np.ndarray, queries: np.ndarray, args: argparse.Namespace) -> dict:
    import faiss

    exact = VectorIndex(IndexConfig(kind="flat")).build(x)
    faiss.omp_set_num_threads(1)
    times = [latencies_ms(exact, queries[:100], args.k)[0] for _ in range(args.repeats)]
    faiss.omp_set_num_threads(args.build_threads)
    return {
        "kind": "flat",
        "p50_ms": float(np.median([np.percentile(t, 50) for t in times])),
        "p99_ms": float(np.median([np.percentile(t, 99) for t in times])),
        "size_bytes": int(x.nbytes),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--n-queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument("--spread", type=float, default=0.3)
    parser.add_argument("--kinds", nargs="+", default=["hnsw", "ivf"])
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    parser.add_argument("--nlist", type=int, default=4096)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[8, 16, 32, 64, 128])
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "llmrec-vi")
    parser.add_argument("--reuse", action="store_true", help="load saved indexes and truth")
    parser.add_argument("--build-only", action="store_true", help="build and save, no search")
    parser.add_argument(
        "--search-only",
        action="store_true",
        help="with --reuse: measure search on saved indexes, keep the rest of --out",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--label", default="rt", help="key suffix of --search-only results")
    args = parser.parse_args()
    import faiss

    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.search_only:
        search_only(args)
        return
    start = time.perf_counter()
    centres, bases, x = clustered_vectors(
        args.n, args.dim, n_clusters=args.clusters, rank=16, spread=args.spread, seed=0
    )
    queries = draw(args.n_queries, centres, bases, rng=np.random.default_rng(1))
    print(
        f"made {x.shape} vectors ({x.nbytes / 1e9:.2f} GB) in {time.perf_counter() - start:.1f} s"
    )
    truth = exact_truth(x, queries, args)
    built = [build_or_load(kind, x, args) for kind in args.kinds]
    if args.build_only:
        return
    flat = exact_latency(x, queries, args)
    print(f"[flat] exact search: {flat}", flush=True)
    results = [
        {**facts, "search": bench_search(index, queries, truth, args)} for index, facts in built
    ]
    sims = x[:2000] @ x[2000:4000].T
    record = {
        "benchmark": "bench_vector_index",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared), no GPU",
        "faiss": faiss.__version__,
        "data": {
            "n": args.n,
            "dim": args.dim,
            "bytes": int(x.nbytes),
            "generator": (
                f"{args.clusters} clusters, rank-16 topic variation (spread {args.spread}), "
                "isotropic noise 0.1, unit norm"
            ),
            "mean_cosine_random_pairs": float(sims.mean()),
            "mean_cosine_true_top1": float(np.mean(np.sum(queries * x[truth[:, 0]], axis=1))),
            "n_queries": args.n_queries,
            "k": args.k,
        },
        "search_threads": 1,
        "build_threads": args.build_threads,
        "repeats": args.repeats,
        "exact": flat,
        "indexes": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(table(record))


def search_only(args: argparse.Namespace) -> None:
    """Re-measure search on saved indexes without regenerating the catalogue (queries need only
    the cluster centres and bases); the other figures are kept from ``--out``."""
    centres, bases, _ = clustered_vectors(
        0, args.dim, n_clusters=args.clusters, rank=16, spread=args.spread, seed=0
    )
    queries = draw(args.n_queries, centres, bases, rng=np.random.default_rng(1))
    truth = np.load(args.workdir / f"truth-{args.n}-{args.n_queries}.npy")
    record = json.loads(args.out.read_text())
    for res in record["indexes"]:
        index = VectorIndex.load(args.workdir / f"{res['kind']}-{args.n}.faiss")
        res[f"search_{args.label}"] = bench_search(index, queries, truth, args)
    args.out.write_text(json.dumps(record, indent=2))


def table(record: dict) -> str:
    lines = [
        "| index | build s | size MB | effort | recall@10 | p50 ms | p99 ms |",
        "|---" * 7 + "|",
    ]
    ex = record["exact"]
    lines.append(
        f"| flat (exact) | - | {ex['size_bytes'] / 1e6:.0f} | - | 1.000 | "
        f"{ex['p50_ms']:.2f} | {ex['p99_ms']:.2f} |"
    )
    for res in record["indexes"]:
        for row in res["search"]:
            lines.append(
                f"| {res['kind']} | {res['build_s']:.0f} | {res['size_bytes'] / 1e6:.0f} | "
                f"{row['effort']} | {row['recall@10']:.3f} | {row['p50_ms']:.2f} | "
                f"{row['p99_ms']:.2f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
