"""SASRec: self-attentive sequential recommendation (Kang & McAuley, 2018).

A causal transformer reads a user's last ``max_len`` items and predicts the next one. The network
follows RecBole's SASRec (learned positions, post-norm blocks with GELU feed-forward, output
scores = final hidden state · item embeddings), so figures compare directly. Training differs in
one way that matters for speed: each training window predicts *every* next item in one forward
(the all-positions causal loss of the original paper), instead of RecBole's one prefix per
training example; an epoch is then ~50 times cheaper for the same targets.

At query time the model reads the history it is given (for the test phase: train + valid), so
the validation item becomes part of the input sequence, as in RecBole. Item index ``i`` is token
``i + 1``; token 0 is padding (sequences are right-aligned: the newest item is last).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Literal, Self

import numpy as np
from pydantic import Field

from llmrec.data.dataset import Dataset, UserHistory
from llmrec.models._torch import (
    TorchConfig,
    TrainLog,
    clone_state,
    heldout_targets,
    import_torch,
    load_net_state,
    ndcg_at_k,
    state_to_numpy,
    torch_session,
    train_loop,
)
from llmrec.models.base import Recommender


class SASRecConfig(TorchConfig):
    """SASRec hyper-parameters (defaults tuned on ML-100K validation NDCG@10)."""

    max_len: int = Field(50, ge=1, description="most recent items read per user")
    stride: int | None = Field(
        10,
        ge=1,
        description="a training window ends every `stride` items (capped at max_len; None = "
        "max_len): each item is a target once, after at least max_len - stride items of context",
    )
    dim: int = Field(64, ge=1, description="hidden size")
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(2, ge=1)
    inner_dim: int = Field(256, ge=1, description="feed-forward hidden size")
    dropout: float = Field(0.3, ge=0, lt=1, description="hidden dropout")
    attn_dropout: float = Field(0.3, ge=0, lt=1, description="attention-probability dropout")
    loss: Literal["ce", "bce", "sampled"] = Field(
        "ce",
        description="ce: softmax over all items; bce: one sampled negative per position; "
        "sampled: softmax over the target and n_negatives uniform negatives shared by the "
        "batch, on cosine similarity / temperature (HSTU's SASRec)",
    )
    n_negatives: int = Field(
        128, ge=1, description="uniform negatives per batch for loss=sampled (HSTU: 128)"
    )
    temperature: float = Field(
        0.05, gt=0, description="softmax temperature of loss=sampled (HSTU: 0.05)"
    )
    batching: Literal["shuffled", "by_length"] = Field(
        "shuffled",
        description="shuffled: each batch is a uniform draw of training windows; by_length: "
        "windows of similar length share a batch (sorted within chunks of 50 batches, the "
        "batches then shuffled) and each batch drops the padding its longest window does "
        "not need, its step weighted by its share of targets; scoring groups users by "
        "history length the same way: the same loss per window and the same scores, far less "
        "attention work when sequences are short",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="bf16: the training loss's item-scoring product (hidden states x item "
        "table, the costliest step of loss=ce) runs in bfloat16 autocast; scoring stays fp32",
    )
    lr: float = Field(2e-3, gt=0)
    batch_size: int = Field(256, ge=1, description="training windows per step")
    epochs: int = Field(200, ge=1)
    patience: int = Field(5, ge=1)


class SASRec(Recommender):
    """Causal self-attention over the user's recent items; scores the next item."""

    name = "sasrec"
    config_class = SASRecConfig
    config: SASRecConfig

    def __init__(
        self, config: SASRecConfig | Mapping[str, Any] | None = None, **overrides: Any
    ) -> None:
        super().__init__(config, **overrides)
        if self.config.dim % self.config.n_heads:
            from llmrec.errors import ConfigError

            raise ConfigError(
                f"SASRec dim={self.config.dim} must be divisible by n_heads={self.config.n_heads}"
            )
        self.net: Any = None
        self.train_log: TrainLog | None = None

    # --- training ----------------------------------------------------------------------------
    def training_log(self) -> TrainLog | None:
        return self.train_log

    def fit(self, train: Dataset, valid: Dataset | None = None) -> Self:
        """Train on the sequences of ``train``; early-stop on NDCG@10 of ``valid``'s items."""
        self._remember_catalogue(train)
        cfg = self.config
        hist = train.history()
        inputs, targets = _training_windows(hist, cfg.max_len, cfg.stride)
        rng = np.random.default_rng(cfg.seed)
        v_users, v_items = heldout_targets(valid)
        device = self.runtime.torch_device()
        with torch_session(self.runtime, cfg.seed) as torch:
            self.net = self._build_net().to(device)
            opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            inputs_t = torch.from_numpy(inputs).to(device)
            targets_t = torch.from_numpy(targets).to(device)

            lengths = (inputs > 0).sum(axis=1)
            n_targets = (targets >= 0).sum(axis=1)
            # by_length: a batch weighs by its targets, as a target weighs in a shuffled batch
            per_batch = n_targets.sum() / max(1, -(-len(inputs) // cfg.batch_size))

            def run_epoch(epoch: int) -> float:
                self.net.train()
                total, count = 0.0, 0
                for batch in _epoch_batches(lengths, cfg.batch_size, cfg.batching, rng):
                    idx = torch.from_numpy(batch).to(device)
                    if cfg.batching == "shuffled":
                        loss = self._loss(inputs_t[idx], targets_t[idx], rng)
                        step = loss
                    else:
                        width = int(lengths[batch].max())
                        loss = self._loss(inputs_t[idx, -width:], targets_t[idx, -width:], rng)
                        step = loss * float(n_targets[batch].sum() / per_batch)
                    opt.zero_grad()
                    step.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                    count += len(idx)
                return total / max(count, 1)

            def evaluate() -> float:
                scores = self._sequence_scores(hist.last(v_users, cfg.max_len))
                return ndcg_at_k(scores, v_users, v_items, hist)

            self.train_log = train_loop(
                cfg,
                run_epoch,
                evaluate if len(v_users) else None,
                lambda: clone_state(self.net),
                self.net.load_state_dict,
            )
        self.net.eval()
        return self

    def _build_net(self) -> Any:
        """The torch network (called inside the torch session of ``fit`` and on load);
        subclasses override it to change the item representation."""
        from llmrec.nets.sasrec import SASRecNet

        return SASRecNet(self.n_items, self.config)

    def _loss(self, inputs: Any, targets: Any, rng: np.random.Generator) -> Any:
        """Mean loss over the non-padding positions of a ``(b, max_len)`` batch."""
        torch = import_torch()
        hidden = self.net(inputs)  # (b, L, dim)
        keep = targets >= 0
        h = hidden[keep]  # (n, dim)
        y = targets[keep]  # (n,) item indices
        table = self.net.item_emb.weight[1:]  # (n_items, dim), token 0 is padding
        if self.config.loss == "ce":
            bf16 = self.config.precision == "bf16"
            with torch.autocast(h.device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = h @ table.T
            return torch.nn.functional.cross_entropy(logits.float(), y)
        if self.config.loss == "sampled":
            return self._sampled_softmax(h, y, table, rng)
        neg = torch.from_numpy(rng.integers(0, self.n_items, size=len(y))).to(y.device)
        pos_logit = (h * table[y]).sum(-1)
        neg_logit = (h * table[neg]).sum(-1)
        bce = torch.nn.functional.binary_cross_entropy_with_logits
        return bce(pos_logit, torch.ones_like(pos_logit)) + bce(
            neg_logit, torch.zeros_like(neg_logit)
        )

    def _sampled_softmax(self, h: Any, y: Any, table: Any, rng: np.random.Generator) -> Any:
        """Softmax cross-entropy of each target against ``n_negatives`` uniform items.

        As HSTU's SASRec (generative-recommenders, ``SampledSoftmaxLoss`` with l2-normalised
        query and item embeddings, temperature 0.05), except that one draw of negatives serves
        every position of the batch: one ``(n, dim) @ (dim, R)`` product instead of gathering
        ``(n, R, dim)`` embeddings. A negative that is the position's own target is masked out.
        """
        torch = import_torch()
        normalize = torch.nn.functional.normalize
        neg = torch.from_numpy(rng.integers(0, self.n_items, size=self.config.n_negatives))
        neg = neg.to(y.device)  # (R,)
        q = normalize(h, dim=-1, eps=1e-6) / self.config.temperature  # (n, dim)
        pos_logit = (q * normalize(table[y], dim=-1, eps=1e-6)).sum(-1, keepdim=True)  # (n, 1)
        neg_logit = q @ normalize(table[neg], dim=-1, eps=1e-6).T  # (n, R)
        neg_logit = neg_logit.masked_fill(neg[None, :] == y[:, None], -5e4)
        logits = torch.cat([pos_logit, neg_logit], dim=1)  # the target is column 0
        return torch.nn.functional.cross_entropy(logits, torch.zeros_like(y))

    # --- scoring -----------------------------------------------------------------------------
    def score(self, users: np.ndarray, history: UserHistory) -> np.ndarray:
        """``(len(users), n_items)`` float32 next-item scores from each user's last
        ``max_len`` items in ``history``."""
        seqs = history.last(np.asarray(users, dtype=np.int64), self.config.max_len)
        with torch_session(self.runtime):
            return np.asarray(self._sequence_scores(seqs).cpu().numpy(), dtype=np.float32)

    def _device_scores(self, users: np.ndarray, hist: UserHistory) -> Callable[[], Any]:
        """:meth:`score`'s next-item scores, left on the network's device to be ranked there."""
        seqs = hist.last(np.asarray(users, dtype=np.int64), self.config.max_len)
        return partial(self._sequence_scores, seqs)

    def _sequence_scores(self, seqs: np.ndarray, batch: int = 1024) -> Any:
        """``(n, n_items)`` float32 tensor on the network's device: the scores of ``(n,
        max_len)`` int64 right-aligned item sequences (-1 = padding), ranked there."""
        torch = import_torch()
        if self.net is None:
            raise AssertionError("SASRec network missing")
        was_training = self.net.training
        self.net.eval()
        # by_length: sequences of similar length share a batch cut to its longest (the same
        # hidden states, positions counting back from the newest item), written back in place
        grouped = self.config.batching == "by_length"
        lengths = (seqs >= 0).sum(axis=1)
        order = np.argsort(-lengths, kind="stable") if grouped else np.arange(len(seqs))
        with torch.inference_mode():
            table = self.net.item_emb.weight[1:]
            if self.config.loss == "sampled":  # trained on cosine similarity: rank by it
                table = torch.nn.functional.normalize(table, dim=-1, eps=1e-6)
            scores = torch.empty((len(seqs), self.n_items), device=table.device)
            for start in range(0, len(seqs), batch):
                rows = order[start : start + batch]
                width = max(1, int(lengths[rows].max())) if grouped else seqs.shape[1]
                tokens = torch.from_numpy(seqs[rows, -width:] + 1).to(table.device)
                last = self.net(tokens, last_only=True)[:, -1]  # (b, dim)
                if self.config.loss == "sampled":
                    last = torch.nn.functional.normalize(last, dim=-1, eps=1e-6)
                scores[torch.from_numpy(rows).to(table.device)] = last @ table.T
        self.net.train(was_training)
        return scores

    # --- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        return state_to_numpy(self.net, "net.")

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.net = self._build_net()
        load_net_state(self.net, state, "net.")
        self.net.to(self.runtime.torch_device())
        self.net.eval()


def _epoch_batches(
    lengths: np.ndarray, batch_size: int, batching: str, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch's batches of window indices (``lengths``: each window's non-padding tokens).

    ``shuffled`` cuts one permutation into consecutive batches. ``by_length`` (transformers'
    ``group_by_length`` scheme) sorts each chunk of 50 batches of that permutation by length,
    longest first, cuts it into batches and shuffles the batches' order, so a batch holds windows
    of similar length while every epoch still sees a new random grouping.
    """
    order = rng.permutation(len(lengths))
    if batching == "by_length":
        chunk = 50 * batch_size
        parts = [order[i : i + chunk] for i in range(0, len(order), chunk)]
        order = np.concatenate(
            [p[np.argsort(-lengths[p], kind="stable")] for p in parts] or [order]
        )
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if batching == "by_length":
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def _training_windows(
    hist: UserHistory, max_len: int, stride: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Cut every user's sequence into windows of ``max_len`` (input, next-item) pairs.

    Windows end every ``stride`` items (default ``max_len``), counted back from the end of each
    sequence. A window's targets are its last ``stride`` positions (all of them in the window
    that reaches the sequence's start), so each interaction after a user's first is a target
    exactly once, with at least ``max_len - stride`` items before it where the sequence has
    them. A smaller stride gives targets longer contexts (RecBole's every-prefix training is
    ``stride=1``) at ``max_len / stride`` times the work.

    Returns:
        inputs: ``(n_windows, max_len)`` int64 tokens (item + 1), 0 = padding, right-aligned.
        targets: ``(n_windows, max_len)`` int64 next item indices, -1 where there is none.
    """
    stride = max_len if stride is None else min(stride, max_len)
    inputs, targets = [], []
    for user in range(hist.n_users):
        seq = hist.of(user).astype(np.int64)
        for end in range(len(seq), 1, -stride):
            chunk = seq[max(0, end - max_len - 1) : end]
            x = np.zeros(max_len, dtype=np.int64)
            y = np.full(max_len, -1, dtype=np.int64)
            x[max_len - len(chunk) + 1 :] = chunk[:-1] + 1
            y[max_len - len(chunk) + 1 :] = chunk[1:]
            if end - stride > 1:  # an earlier window has the targets before these
                y[: max_len - stride] = -1
            inputs.append(x)
            targets.append(y)
    if not inputs:
        empty = np.zeros((0, max_len), dtype=np.int64)
        return empty, empty.copy()
    return np.stack(inputs), np.stack(targets)
