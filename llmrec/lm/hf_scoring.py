"""Log-likelihood scoring for the transformers backend, batched across prompts.

:meth:`HFScoring.loglikelihood_batch` is what the likelihood ranker calls with a batch of users:
the users' prompts run together, length-bucketed and left-padded (``batch_size`` prompts and
``max_batch_tokens`` padded tokens a forward), and every continuation of every prompt in a
bucket is then scored on a copy of its own prompt's KV cache, many users' continuations in one
forward. :meth:`HFScoring.loglikelihood` is the same path with one prompt.

A continuation whose tokens do not extend its prompt's tokens (a merge across the boundary) is
scored on its own full sequence instead (:meth:`HFScoring._score_full`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmrec.errors import BackendError
from llmrec.lm.base import check_logprobs
from llmrec.lm.hf_base import HFBase, _length_buckets

__all__ = ["HFScoring"]

#: cap on elements of float32 logits held at once while scoring continuations (~256 MB)
_MAX_LOGIT_ELEMENTS = 64_000_000


@dataclass
class _Plan:
    """One prompt's work: its (fitted) prefix tokens, the continuations that extend it (by
    position) and those that must be scored on full sequences."""

    p_ids: list[int]
    prefix: list[int] = field(default_factory=list)
    split: dict[int, list[int]] = field(default_factory=dict)
    fallback: list[int] = field(default_factory=list)


class HFScoring(HFBase):
    """Summed log-probabilities of continuations (the likelihood ranker's verbs)."""

    def loglikelihood(self, prompt: str, continuations: Sequence[str]) -> np.ndarray:
        """``(len(continuations),)`` float32 summed log-probabilities of each continuation.

        The prompt runs once; its KV cache is repeated for a batch of continuations.
        """
        return self.loglikelihood_batch([prompt], [continuations])[0]

    def loglikelihood_batch(
        self, prompts: Sequence[str], continuations: Sequence[Sequence[str]]
    ) -> list[np.ndarray]:
        """One ``(len(continuations[i]),)`` float32 array per prompt, the prompts' forwards
        batched (length-bucketed, left-padded) and their continuations scored together."""
        if len(prompts) != len(continuations):
            raise BackendError(
                f"{len(prompts)} prompt(s) but {len(continuations)} continuation list(s)"
            )
        plans = [self._plan(p, c) for p, c in zip(prompts, continuations, strict=True)]
        out = [np.zeros(len(c), dtype=np.float32) for c in continuations]
        users = [u for u, plan in enumerate(plans) if plan.split]
        self._count(
            prompt_tokens=sum(
                len(plans[u].prefix) + sum(len(c) for c in plans[u].split.values()) for u in users
            )
        )
        lengths = [len(plans[u].prefix) for u in users]
        for bucket in _length_buckets(lengths, self.batch_size, self.max_batch_tokens):
            group = [plans[users[b]] for b in bucket]
            scores = self._score_on_prefixes(group)
            for b, plan, got in zip(bucket, group, scores, strict=True):
                out[users[b]][list(plan.split)] = got
        for u, plan in enumerate(plans):
            for i in plan.fallback:
                full = self._ids(prompts[u] + continuations[u][i])
                out[u][i] = self._score_full(plan.p_ids, full)
        return [check_logprobs(o, o.shape, f"{self.model_id} loglikelihood") for o in out]

    def _plan(self, prompt: str, continuations: Sequence[str]) -> _Plan:
        """Which continuations extend the prompt's tokens, and the prompt cut to leave room."""
        plan = _Plan(self._ids(prompt))
        for i, cont in enumerate(continuations):
            full = self._ids(prompt + cont)
            if self.config.prefix_cache and full[: len(plan.p_ids)] == plan.p_ids:
                plan.split[i] = full[len(plan.p_ids) :]
            else:
                plan.fallback.append(i)
        if plan.split:
            longest = max(len(c) for c in plan.split.values())
            budget = max(1, self.context_length - longest)
            plan.prefix = self._fit(plan.p_ids, budget, keep="end")
        return plan

    def _score_on_prefixes(self, plans: list[_Plan]) -> list[np.ndarray]:
        """Summed log-probs of each plan's continuations after its prefix: the prefixes run in
        one left-padded forward, and continuations share copies of their prefix's KV cache."""
        import torch

        rows = [(r, c) for r, plan in enumerate(plans) for c in plan.split.values()]
        flat = np.zeros(len(rows), dtype=np.float32)
        with torch.inference_mode():
            batch = self._pad_left([plan.prefix for plan in plans])
            res = self.model(**batch, use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(res.logits[:, -1, :].float(), dim=-1)
            prefix_cache = res.cache if self._cache_kw == "cache" else res.past_key_values
            vocab = int(res.logits.shape[-1])
            per_user = max(len(plan.split) for plan in plans)
            chunks = list(self._row_chunks(rows, vocab, batch["input_ids"].shape[1], per_user))
            for n, chunk in enumerate(chunks):
                # the last chunk may consume the prefix cache itself: no copy to make
                cache = prefix_cache if n == len(chunks) - 1 else copy.deepcopy(prefix_cache)
                scores = self._score_chunk(cache, batch, [rows[j] for j in chunk])
                owner = self._long([rows[j][0] for j in chunk])
                heads = self._long([rows[j][1][0] if rows[j][1] else 0 for j in chunk])
                heads_lp = first[owner, heads].cpu().numpy()
                for k, j in enumerate(chunk):
                    flat[j] = (heads_lp[k] if rows[j][1] else 0.0) + scores[k]
        ends = np.cumsum([len(plan.split) for plan in plans])
        return list(np.split(flat, ends[:-1]))

    def _row_chunks(
        self, rows: list[tuple[int, list[int]]], vocab: int, n_prefix: int, per_user: int
    ) -> Iterator[list[int]]:
        """Continuation rows per forward, within the logits cap. The token budget counts each
        row's copy of the prefix, but never allows fewer rows than one prompt's scoring has
        always held at once (its continuations, up to ``max_batch_tokens // longest``): one
        prompt is chunked exactly as before batching across prompts."""
        longest = max(1, max(len(c) for _, c in rows))
        by_logits = max(1, _MAX_LOGIT_ELEMENTS // (longest * vocab))
        one_prompt = min(per_user, max(1, self.max_batch_tokens // longest))
        per_chunk = min(by_logits, max(one_prompt, self.max_batch_tokens // (n_prefix + longest)))
        for start in range(0, len(rows), per_chunk):
            yield list(range(start, min(len(rows), start + per_chunk)))

    def _score_chunk(
        self, cache: Any, batch: dict[str, Any], rows: list[tuple[int, list[int]]]
    ) -> np.ndarray:
        """Log-probs of tokens 1.. of each row's continuation (token 0 is scored from the
        prompt), each row reading its own prompt's (left-padded) KV cache; ``cache`` (the
        prompts' cache, or a copy) is consumed."""
        import torch

        conts = [c for _, c in rows]
        if max(len(c) for c in conts) <= 1:
            return np.zeros(len(conts), dtype=np.float32)
        width = max(len(c) for c in conts)
        ids = self._long(torch.full((len(conts), width), self._pad_id))
        cont_mask = self._long(torch.zeros((len(conts), width)))
        for row, c in enumerate(conts):  # right padding: every row starts at the same position
            ids[row, : len(c)] = torch.tensor(c, dtype=torch.long)
            cont_mask[row, : len(c)] = 1
        owner = self._long([r for r, _ in rows])
        cache.batch_select_indices(owner)
        prefix_mask = batch["attention_mask"][owner]
        mask = torch.cat([prefix_mask, cont_mask], 1)
        # each row continues from its own prompt's length, whatever padding sits before it
        start = prefix_mask.sum(1, keepdim=True)
        positions = start + self._long(torch.arange(width)).unsqueeze(0)
        logits = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **{self._cache_kw: cache},
        ).logits[:, :-1, :]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        token_lp = logprobs.gather(2, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        return (token_lp * cont_mask[:, 1:]).sum(1).cpu().numpy()

    def _score_full(self, p_ids: list[int], full: list[int]) -> float:
        """Summed log-probs of the tokens of ``full`` after its common prefix with ``p_ids``."""
        import torch

        start = 0
        while start < min(len(p_ids), len(full)) and p_ids[start] == full[start]:
            start += 1
        start = max(start, 1)  # the first token has no context to be scored from
        if start >= len(full):
            return 0.0
        fitted = self._fit(full, self.context_length, keep="end")
        start = max(1, start - (len(full) - len(fitted)))  # the cut drops tokens before start
        full = fitted
        self._count(prompt_tokens=len(full))
        with torch.inference_mode():
            logits = self.model(self._long([full]), use_cache=False).logits
            logprobs = torch.log_softmax(logits[0, start - 1 : -1, :].float(), dim=-1)
            target = self._long(full[start:]).unsqueeze(-1)
            return float(logprobs.gather(1, target).sum())

    def loglikelihood_full(self, prompt: str, continuations: Sequence[str]) -> np.ndarray:
        """Reference scoring of every continuation on its own full sequence (no KV reuse)."""
        p_ids = self._ids(prompt)
        scores = [self._score_full(p_ids, self._ids(prompt + c)) for c in continuations]
        return np.asarray(scores, dtype=np.float32)
