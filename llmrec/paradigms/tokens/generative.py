"""Generative retrieval over semantic IDs (the TIGER idea), as a :class:`Recommender`.

Each item is a tuple of ``T = L + 1`` codes (:mod:`~llmrec.paradigms.tokens.quantize`). A user's
history becomes one token sequence ``[BOS, c(i1)_0 .. c(i1)_L, c(i2)_0, ...]`` — every position
of the tuple has its own token range, so a token says both its level and its code. A small
decoder-only transformer learns to predict every next token (all positions at once, as SASRec
does for items); recommending decodes the next item's tuple by beam search, constrained by a
trie of valid tuples (so every beam ends on a real item) that also drops the user's seen items.
The top-``k`` beams are the list; items outside the beams follow by popularity (``fill``).

Decoding keeps a key/value cache: the history is read once per user, then each of the ``T``
steps adds one token to ``beam_size`` copies of it.

Example::

    model = GenerativeRetrieval(encoder="minilm-l6", beam_size=20).fit(split.train, split.valid)
    model.recommend([0, 1], k=10)
    model.decode_stats        # {"beams": ..., "invalid": 0, ...}: measured, not assumed
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import numpy as np
from pydantic import Field

from llmrec.data.dataset import Dataset, UserHistory
from llmrec.lm.base import LanguageModel
from llmrec.lm.pool import LMPool
from llmrec.models._torch import (
    TorchConfig,
    clone_state,
    heldout_targets,
    load_net_state,
    state_to_numpy,
    torch_session,
    train_loop,
)
from llmrec.models.base import Recommender
from llmrec.models.trainlog import TrainLog
from llmrec.paradigms.embeddings.tune import (
    TunedEncoder,
    restore_tuned,
    save_tuned,
    tuning_diagnostics,
)
from llmrec.paradigms.tokens._ids import SemanticIDConfig, fit_semantic_ids, saved_tune
from llmrec.paradigms.tokens.quantize import SemanticIDs, semantic_ids_from_state

if TYPE_CHECKING:
    from llmrec.nets.tiger import TigerNet

#: token 0 pads, token 1 begins a sequence; codes start at 2
PAD, BOS, FIRST_CODE = 0, 1, 2
#: score of items outside the beams (before the popularity tie-break in [0, 1))
FILL_SCORE = -1000.0


class GenerativeConfig(TorchConfig, SemanticIDConfig):
    """Settings of :class:`GenerativeRetrieval` (plus :class:`TorchConfig` and
    :class:`SemanticIDConfig`).

    Attributes:
        max_items: history items the model reads (the last ones).
        stride: training windows of ``max_items + 1`` items end every ``stride`` items, and only
            a window's last ``stride`` items are trained as targets (all of them in the window
            that reaches the sequence's start): each item is still a target once, after at
            least ``max_items + 1 - stride`` items of context, at about ``(max_items + 1) /
            stride`` times the work. ``None``: non-overlapping windows (as SASRec's
            ``stride``, docs/models.md).
        dim, layers, heads, dropout: transformer size.
        beam_size: beams kept while decoding (top-``k`` needs ``beam_size >= k`` to be full).
        constrained: restrict decoding to the trie of valid tuples (off only to measure how
            many invalid IDs an unconstrained decoder writes).
        fill: rank items outside the beams by popularity after the beams, or leave them out.
        valid_users: validation users decoded per early-stopping check (0: all).
        lr: Adam learning rate. 3e-3, not the shared 1e-3: an epoch of ML-100K is only 40
            steps (5,105 windows of 128), and at 1e-3 TIGER was still improving when capped
            at 30 epochs; at 3e-3 it peaks near epoch 21 (docs/tokens.md).
        lr_schedule: ``constant``, or ``cosine``: linear warm-up over ``warmup_epochs``, then
            a cosine decay to zero at ``epochs`` (early stopping may end training sooner).
        warmup_epochs: epochs of linear warm-up (``cosine`` only).
        collaborative: as in :class:`SemanticIDConfig`, but 1.0 by default here: semantic IDs
            of text plus collaborative factors lift TIGER's NDCG@10 on ML-100K over text-only
            IDs (``collaborative=0``; figures in docs/tokens.md and docs/benchmarks.md).
    """

    max_items: int = Field(20, ge=1)
    stride: int | None = Field(None, ge=1)
    dim: int = Field(128, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    beam_size: int = Field(20, ge=1)
    constrained: bool = True
    fill: Literal["popularity", "none"] = "popularity"
    valid_users: int = Field(0, ge=0)
    lr: float = Field(3e-3, gt=0)
    collaborative: float = Field(1.0, ge=0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: int = Field(0, ge=0)
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(128, ge=1)
    patience: int = Field(3, ge=1)
    eval_every: int = Field(3, ge=1)


class Trie:
    """Valid tuples as a table of children: ``child[node, code]`` is the next node (-1: none).

    Node 0 is the root; a node reached after ``T`` codes is a leaf and ``item[node]`` its item.
    """

    def __init__(self, codes: np.ndarray, width: int | None = None) -> None:
        self.length = codes.shape[1]
        width = max(width or 0, int(codes.max()) + 1)
        children: list[list[int]] = [[-1] * width]
        items = [-1]
        for item, row in enumerate(codes.tolist()):
            node = 0
            for code in row:
                nxt = children[node][code]
                if nxt < 0:
                    nxt = len(children)
                    children.append([-1] * width)
                    items.append(-1)
                    children[node][code] = nxt
                node = nxt
            items[node] = item
        self.child = np.array(children, dtype=np.int64)
        self.item = np.array(items, dtype=np.int64)


class GenerativeRetrieval(Recommender):
    """TIGER-style generative retriever (see the module docstring)."""

    name: ClassVar[str] = "tiger"
    config_class = GenerativeConfig
    config: GenerativeConfig

    def __init__(
        self,
        config: GenerativeConfig | Mapping[str, Any] | None = None,
        *,
        ids: SemanticIDs | None = None,
        lm: LanguageModel | None = None,
        lm_pool: LMPool | None = None,
        **overrides: Any,
    ) -> None:
        """``ids``: ready semantic IDs (skips encoding); ``lm``: the encoder instance, else
        ``config.encoder`` is taken from ``lm_pool`` (default: the process-wide pool)."""
        super().__init__(config, **overrides)
        self.ids = ids
        self._net: Any = None
        self._trie: Trie | None = None
        self._lm, self._lm_pool = lm, lm_pool
        self.tuned: TunedEncoder | None = None
        self.decode_stats: dict[str, int] = {"users": 0, "beams": 0, "invalid": 0}
        self.train_log: TrainLog | None = None

    def language_models(self) -> list[LanguageModel]:
        """The LM the item texts were encoded with for the semantic IDs (none when they were
        given or loaded)."""
        return [self._lm] if self._lm is not None else []

    def training_log(self) -> TrainLog | None:
        return self.train_log

    # --- token layout ------------------------------------------------------------------------
    @property
    def _offsets(self) -> np.ndarray:
        """``(T,)`` int64 first token id of each tuple position."""
        assert self.ids is not None
        sizes = np.array(self.ids.vocab_sizes)
        return FIRST_CODE + np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    @property
    def _vocab(self) -> int:
        assert self.ids is not None
        return FIRST_CODE + int(sum(self.ids.vocab_sizes))

    def _item_tokens(self) -> np.ndarray:
        """``(n_items, T)`` int64 token ids of each item's tuple."""
        assert self.ids is not None
        return self.ids.codes + self._offsets[None, :]

    # --- training ----------------------------------------------------------------------------
    def fit(self, train: Dataset, valid: Dataset | None = None) -> Self:
        cfg = self.config
        self._remember_catalogue(train)
        if self.ids is None or self.ids.n_items != train.n_items:
            self.ids, self._lm, self.tuned = fit_semantic_ids(
                train, cfg, cfg.seed, lm=self._lm, lm_pool=self._lm_pool, runtime=self.runtime
            )
        self._trie = Trie(self.ids.codes, max(self.ids.vocab_sizes))
        windows, loss_from = self._training_windows(train.history())
        users, targets = heldout_targets(valid)
        if cfg.valid_users and len(users) > cfg.valid_users:
            pick = np.random.default_rng(cfg.seed).choice(len(users), cfg.valid_users, False)
            users, targets = users[np.sort(pick)], targets[np.sort(pick)]
        with torch_session(self.runtime, cfg.seed) as torch:
            self._net = self._build_net().to(self.runtime.torch_device())
            opt = torch.optim.Adam(self._net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
            steps = -(-len(windows) // cfg.batch_size)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(cfg, steps))
            gen = np.random.default_rng(cfg.seed)

            def run_epoch(_epoch: int) -> float:
                return self._train_epoch(torch, windows, loss_from, opt, sched, gen)

            def evaluate() -> float:
                assert self._fit_history is not None
                return self._valid_ndcg(users, targets, self._fit_history)

            self.train_log = train_loop(
                cfg,
                run_epoch,
                evaluate if len(users) else None,
                lambda: clone_state(self._net),
                self._net.load_state_dict,
            )
            self._net.eval()
        return self

    @property
    def _device(self) -> Any:
        """Where the network's weights are (the resolved runtime device)."""
        return next(self._net.parameters()).device

    def _build_net(self) -> TigerNet:
        """The transformer (called inside the torch session of ``fit`` and of loading)."""
        from llmrec.nets.tiger import TigerNet

        return TigerNet(self._vocab, self._max_len, self.config)

    @property
    def _max_len(self) -> int:
        assert self.ids is not None
        return 1 + (self.config.max_items + 1) * self.ids.length

    def _training_windows(self, hist: UserHistory) -> tuple[np.ndarray, np.ndarray]:
        """``(n_windows, max_len)`` int64 token rows, left-padded: up to ``max_items + 1``
        consecutive items of each user ending every ``stride`` items, newest first; and per row
        the first column whose token is a training target (see ``stride``)."""
        span = self.config.max_items + 1
        stride = span if self.config.stride is None else min(self.config.stride, span)
        tokens = self._item_tokens()
        width = tokens.shape[1]
        rows, starts = [], []
        for user in range(hist.n_users):
            seq = hist.of(user)
            for end in range(len(seq), 0, -stride):
                chunk = seq[max(0, end - span) : end]
                rows.append(np.concatenate([[BOS], tokens[chunk].reshape(-1)]))
                # an earlier window trains the items before this one's last `stride`
                starts.append(self._max_len - stride * width if end - stride > 0 else 0)
        out = np.full((len(rows), self._max_len), PAD, dtype=np.int64)
        for i, row in enumerate(rows):
            out[i, self._max_len - len(row) :] = row
        return out, np.asarray(starts, dtype=np.int64)

    def _level_mask(self, torch: Any) -> Any:
        """``(vocab, vocab)`` additive mask: row = target token, columns outside the target's
        tuple position are ``-inf`` (the loss compares codes of one level only)."""
        assert self.ids is not None
        level = np.full(self._vocab, -1)
        for pos, (start, size) in enumerate(zip(self._offsets, self.ids.vocab_sizes, strict=True)):
            level[start : start + size] = pos
        same = level[:, None] == level[None, :]
        mask = torch.as_tensor(np.where(same, 0.0, -np.inf), dtype=torch.float32)
        return mask.to(self._device)

    def _train_epoch(
        self,
        torch: Any,
        windows: np.ndarray,
        loss_from: np.ndarray,
        opt: Any,
        sched: Any,
        gen: Any,
    ) -> float:
        cfg, net = self.config, self._net
        net.train()
        level_mask = self._level_mask(torch)
        order = gen.permutation(len(windows))
        total, count = 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            rows = order[start : start + cfg.batch_size]
            batch = torch.as_tensor(windows[rows]).to(self._device)
            inputs, targets = batch[:, :-1], batch[:, 1:]
            hidden, _ = net(inputs, inputs != PAD)
            # target column j is token j + 1 of the row
            columns = torch.arange(1, batch.shape[1], device=batch.device)
            trained = columns >= torch.as_tensor(loss_from[rows]).to(batch.device)[:, None]
            keep = (targets != PAD) & trained
            logits = net.head(hidden[keep]) + level_mask[targets[keep]]
            loss = torch.nn.functional.cross_entropy(logits, targets[keep])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * int(keep.sum())
            count += int(keep.sum())
        return total / max(count, 1)

    def _valid_ndcg(self, users: np.ndarray, targets: np.ndarray, hist: UserHistory) -> float:
        """Mean NDCG@10 of each held-out target among the decoded beams (miss: 0)."""
        self._net.eval()
        gains = []
        for start in range(0, len(users), 256):
            batch = users[start : start + 256]
            items, _ = self.decode(batch, hist)
            for row, target in zip(items, targets[start : start + 256], strict=True):
                hit = np.flatnonzero(row[:10] == target)
                gains.append(1.0 / np.log2(hit[0] + 2.0) if len(hit) else 0.0)
        self._net.train()
        return float(np.mean(gains)) if gains else 0.0

    # --- decoding ----------------------------------------------------------------------------
    def decode(
        self,
        users: np.ndarray | list[int],
        history: UserHistory,
        beam_size: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Beam-search each user's next item.

        Returns:
            ``(items, scores)``, both ``(len(users), beam_size)``: item indices (-1 where a beam
            ended on no item) and summed log-probabilities of the tuples, best first.
            ``decode_stats`` counts beams and invalid ones (tuples naming no item).
        """
        self._require_fitted()
        assert self.ids is not None and self._trie is not None
        users = np.asarray(users, dtype=np.int64)
        width = beam_size or self.config.beam_size
        with torch_session(self.runtime) as torch, torch.no_grad():
            tuples, scores = self._beam_search(torch, users, history, width)
        lookup = self.ids.lookup()
        items = np.full(tuples.shape[:2], -1, dtype=np.int64)
        finite = np.isfinite(scores)
        for (row, beam), tup in zip(np.argwhere(finite), tuples[finite], strict=True):
            items[row, beam] = lookup.get(tuple(tup.tolist()), -1)
        invalid = finite & (items < 0)
        self.decode_stats["users"] += len(users)
        self.decode_stats["beams"] += int(finite.sum())
        self.decode_stats["invalid"] += int(invalid.sum())
        scores = np.where(items >= 0, scores, -np.inf).astype(np.float32)
        return items, scores

    def _contexts(self, users: np.ndarray, hist: UserHistory) -> np.ndarray:
        """``(n, 1 + max_items * T)`` int64 left-padded token rows of each user's last items."""
        last = hist.last(users, self.config.max_items)
        tokens = self._item_tokens()
        out = np.where(last[:, :, None] >= 0, tokens[np.maximum(last, 0)], PAD)
        out = out.reshape(len(users), -1)
        lengths = (last >= 0).sum(axis=1) * tokens.shape[1]
        bos = np.full((len(users), 1), PAD, dtype=np.int64)
        out = np.concatenate([bos, out], axis=1)
        out[np.arange(len(users)), out.shape[1] - lengths - 1] = BOS
        return out

    def _beam_search(
        self, torch: Any, users: np.ndarray, hist: UserHistory, width: int
    ) -> tuple[np.ndarray, np.ndarray]:
        assert self._trie is not None and self.ids is not None
        net, trie, steps = self._net, self._trie, self.ids.length
        n = len(users)
        ctx = torch.as_tensor(self._contexts(users, hist)).to(self._device)
        hidden, cache = net(ctx, ctx != PAD, use_cache=True)
        positions = (ctx != PAD).sum(dim=1)  # next token's position index
        logp = self._step_logprobs(torch, hidden[:, -1], 0)  # (n, K0)
        nodes = np.zeros((n, 1), dtype=np.int64)
        scores = np.zeros((n, 1), dtype=np.float64)
        chosen = np.zeros((n, 1, 0), dtype=np.int64)
        seen = [set(hist.of(int(u)).tolist()) for u in users]
        for step in range(steps):
            cand = scores[:, :, None] + logp.reshape(n, nodes.shape[1], -1)
            if self.config.constrained:
                child = trie.child[nodes][:, :, : cand.shape[2]]
                cand = np.where(child >= 0, cand, -np.inf)
                if step == steps - 1:
                    cand = _drop_seen(cand, trie.item[np.maximum(child, 0)], child, seen)
            flat = cand.reshape(n, -1)
            k = min(width, flat.shape[1])
            top = np.argsort(-flat, axis=1, kind="stable")[:, :k]
            beam, code = np.divmod(top, cand.shape[2])
            scores = np.take_along_axis(flat, top, axis=1)
            prev = np.take_along_axis(nodes, beam, axis=1)
            nodes = trie.child[prev, np.minimum(code, trie.child.shape[1] - 1)]
            nodes = np.where(code < trie.child.shape[1], nodes, -1)
            nodes = np.maximum(nodes, 0)  # unconstrained paths off the trie: root (unused)
            chosen = np.concatenate(
                [np.take_along_axis(chosen, beam[:, :, None], axis=1), code[:, :, None]], axis=2
            )
            if step == steps - 1:
                break
            origin = torch.as_tensor((np.arange(n)[:, None] * cache.width + beam).reshape(-1))
            cache.select(origin.to(self._device), k)
            token = torch.as_tensor((code + self._offsets[step]).reshape(-1, 1)).to(self._device)
            pos = positions.repeat_interleave(k) + step
            hidden = net.step(token, pos, cache)
            logp = self._step_logprobs(torch, hidden[:, -1], step + 1)
        return chosen, scores

    def _step_logprobs(self, torch: Any, hidden: Any, pos: int) -> np.ndarray:
        """``(rows, K_pos)`` float64 log-probabilities over the codes of tuple position ``pos``."""
        assert self.ids is not None
        start = int(self._offsets[pos])
        logits = self._net.head(hidden)[:, start : start + self.ids.vocab_sizes[pos]]
        return torch.log_softmax(logits.double(), dim=-1).cpu().numpy()

    # --- the recommender verbs ---------------------------------------------------------------
    def score(self, users: np.ndarray, history: UserHistory) -> np.ndarray:
        """Beam items score their tuple log-probability (> ``FILL_SCORE``); with
        ``fill="popularity"`` every other item scores ``FILL_SCORE + popularity share``."""
        assert self._popularity is not None
        scores = np.full((len(users), self.n_items), -np.inf, dtype=np.float32)
        if self.config.fill == "popularity":
            share = self._popularity / max(float(self._popularity.max()), 1.0)
            scores[:] = FILL_SCORE + 0.99 * share
        for start in range(0, len(users), 256):
            batch = users[start : start + 256]
            items, beam_scores = self.decode(batch, history)
            rows = np.repeat(np.arange(start, start + len(batch)), items.shape[1])
            ok = items.reshape(-1) >= 0
            scores[rows[ok], items.reshape(-1)[ok]] = beam_scores.reshape(-1)[ok]
        return scores

    def diagnostics(self) -> dict[str, Any]:
        """Semantic-ID diagnostics, the decode counters so far and what tuning cost."""
        assert self.ids is not None
        out = {"ids": self.ids.diagnostics.as_dict(), "decode": dict(self.decode_stats)}
        return out | tuning_diagnostics(self.tuned)

    def _save_files(self, folder: Path) -> None:
        """The tuned encoder in ``encoder/`` (the semantic IDs are in the state)."""
        save_tuned(self.tuned, folder)

    def _load_files(self, folder: Path) -> None:
        self.tuned = restore_tuned(folder, saved_tune(self.config))

    # --- persistence -------------------------------------------------------------------------
    def _state(self) -> dict[str, np.ndarray]:
        assert self.ids is not None
        state = state_to_numpy(self._net, "net.")
        state["codes"] = self.ids.codes
        for i, book in enumerate(self.ids.codebooks):
            state[f"codebook{i}"] = book
        return state

    def _load_state(self, state: dict[str, np.ndarray]) -> None:
        self.ids = semantic_ids_from_state(state, self.n_items, self.config.quantizer)
        self._trie = Trie(self.ids.codes, max(self.ids.vocab_sizes))
        with torch_session(self.runtime):
            self._net = self._build_net()
            load_net_state(self._net, state, "net.")
            self._net.to(self.runtime.torch_device()).eval()


def _lr_factor(cfg: GenerativeConfig, steps_per_epoch: int) -> Any:
    """Multiplier of ``cfg.lr`` at each optimiser step (for ``LambdaLR``)."""
    import math

    if cfg.lr_schedule == "constant":
        return lambda _step: 1.0
    warmup = cfg.warmup_epochs * steps_per_epoch
    total = max(cfg.epochs * steps_per_epoch, warmup + 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / (total - warmup)))

    return factor


def _drop_seen(
    cand: np.ndarray, leaf_items: np.ndarray, child: np.ndarray, seen: list[set[int]]
) -> np.ndarray:
    """Set to ``-inf`` the final-step candidates whose item the user already has."""
    if not any(seen):
        return cand
    cand = cand.copy()
    for row, items in enumerate(seen):
        if items:
            hit = np.isin(leaf_items[row], list(items)) & (child[row] >= 0)
            cand[row][hit] = -np.inf
    return cand
