"""How far can tuning an item encoder take text-kNN on MovieLens-100K? A bound, in seconds.

Tuning MiniLM costs ~20 pairs per CPU second, so which pairs and which loss deserve the CPU is
worth knowing before it is spent. This script replaces the encoder by the most flexible one
there is — a free table of item vectors, one row per item, started from the zero-shot MiniLM
vectors — and trains it with the same in-batch-negatives softmax (scale 20, cosine) on the same
seeded co-interaction pairs (:func:`llmrec.paradigms.embeddings.tune.training_pairs`) that
``tune:`` would draw, then scores the table with text-kNN's own scoring and the evaluation of
``bench_transfer_encoder.py`` (leave-one-out by time, full ranking, 943 users). A table can
memorise every item but cannot generalise from one title to another, so it bounds what the
pairs say about each item, not what MiniLM makes of them. The loop is a few lines of torch on
an embedding table: the table is not a sentence encoder, so sentence-transformers' trainer does
not apply.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/bench_encoder_ceiling.py

Writes ``benchmarks/results/bench_encoder_ceiling.json``; about 1 CPU minute.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "bench_encoder_ceiling.json"
TEMPLATE = "{title} ({year}). Genres: {genres}"
SCALE = 20.0  # sentence-transformers' default for MultipleNegativesRankingLoss


def train_table(
    start: np.ndarray, anchors: np.ndarray, positives: np.ndarray, both_ways: bool, seed: int
) -> np.ndarray:
    """``(n_items, dim)`` vectors: ``start`` trained one epoch (Adam, lr 1e-2, batch 64) so that
    each anchor's row picks its positive's row among the batch's positives (and back)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    table = torch.nn.Parameter(torch.tensor(start))
    opt = torch.optim.Adam([table], lr=1e-2)
    a, b = torch.as_tensor(anchors), torch.as_tensor(positives)
    order = torch.randperm(len(a), generator=torch.Generator().manual_seed(seed))
    for s in range(0, len(a), 64):
        batch = order[s : s + 64]
        logits = (
            SCALE * F.normalize(table[a[batch]], dim=-1) @ F.normalize(table[b[batch]], dim=-1).T
        )
        labels = torch.arange(len(batch))
        loss = F.cross_entropy(logits, labels)
        if both_ways:
            loss = (loss + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    return table.detach().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", nargs="+", type=int, default=[1024, 4096, 12288, 0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import torch

    from llmrec.data.movielens import load_movielens_100k
    from llmrec.data.splits import leave_one_out
    from llmrec.eval import evaluate
    from llmrec.models import create_model
    from llmrec.paradigms.embeddings.index import normalize
    from llmrec.paradigms.embeddings.tune import EncoderTuneConfig, training_pairs

    torch.set_num_threads(1)
    split = leave_one_out(load_movielens_100k())
    knn = create_model("textknn", {"encoder": "minilm-l6", "item_template": TEMPLATE})
    knn.fit(split.train)
    start = knn.item_vectors.copy()

    def ndcg(vectors: np.ndarray) -> float:
        knn.item_vectors = normalize(vectors.astype(np.float32))
        return float(evaluate(knn, split, phase="test", ks=(10,)).metrics["ndcg@10"])

    ids = [str(i) for i in range(split.train.n_items)]  # texts that name the item's row
    rows: list[dict[str, Any]] = [{"pairs": 0, "loss": "zero-shot", "ndcg@10": ndcg(start)}]
    for n in args.pairs:
        cfg = EncoderTuneConfig(max_pairs=n or None)
        drawn = training_pairs(split.train, ids, cfg, seed=args.seed)
        anchors = np.asarray([int(t) for t in drawn.anchors])
        for loss in ("mnrl", "symmetric"):
            tic = time.process_time()
            table = train_table(start, anchors, drawn.items, loss == "symmetric", args.seed)
            row = {"pairs": len(anchors), "loss": loss, "cpu_s": time.process_time() - tic}
            rows.append({**row, "ndcg@10": ndcg(table)})
            print(rows[-1], flush=True)
    record = {
        "benchmark": "bench_encoder_ceiling",
        "dataset": "ml-100k, leave-one-out by time, full ranking, 943 users",
        "what": "text-kNN on a free item table trained with in-batch negatives (bound)",
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print("| pairs | loss | text-kNN NDCG@10 |\n|---|---|---|")
    for r in rows:
        print(f"| {r['pairs']:,} | {r['loss']} | {r['ndcg@10']:.4f} |")


if __name__ == "__main__":
    main()
