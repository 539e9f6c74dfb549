"""Hugging Face ``transformers`` backend for causal LMs: local folders and GGUF files, on CPU.

A GGUF file is dequantised by transformers (slow: docs/benchmarks.md); the result is saved once
as a safetensors folder under the model cache and every later load reads that folder. The
conversion is written to a temporary folder and renamed into place, so an interrupted
conversion never leaves a half-written cache entry.

Batches are bucketed by length and left-padded with explicit ``position_ids``; forwards ask only
for the logits they need (``logits_to_keep``), which matters for Gemma's 262k-token vocabulary.
:meth:`HFCausalLM.loglikelihood` runs the shared prompt once and scores all continuations on
copies of its KV cache.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig, validated
from llmrec.errors import BackendError, ConfigError, require
from llmrec.lm.base import (
    LanguageModel,
    Pooling,
    check_logprobs,
    check_vectors,
    cut_at_stops,
    quiet_loading,
    single_token_ids,
)
from llmrec.lm.gguf import convert_gguf, converted_dir

if TYPE_CHECKING:
    import torch

__all__ = ["HFCausalLM", "HFConfig", "convert_gguf", "converted_dir"]

log = logging.getLogger(__name__)

#: cap on elements of float32 logits held at once while scoring continuations (~256 MB)
_MAX_LOGIT_ELEMENTS = 64_000_000


class HFConfig(StrictConfig):
    """Settings of :class:`HFCausalLM`.

    Attributes:
        path: a local Hugging Face model folder, or a ``.gguf`` file.
        gguf_file: GGUF file name inside ``path`` (a folder); implied when ``path`` is a file.
        dtype: compute dtype. ``float32`` is the default: see docs/lm.md for the measurement.
        device: ``cpu`` or ``cuda[:N]``, as :class:`~llmrec.runtime.RuntimeOptions` resolve it.
        n_threads: torch intra-op threads; ``None`` leaves torch's setting alone.
        batch_size: most sequences in one forward.
        max_batch_tokens: most padded tokens (batch x length) in one forward.
        pooling: default pooling of :meth:`HFCausalLM.encode` (``mean`` or ``last``).
        normalize: L2-normalise encodings (cosine similarity becomes a dot product).
        max_length: token budget of one input; ``None`` uses the model's context length.
        cache_dir: where GGUF conversions are kept (default ``paths.model_cache_dir()``).
        prefix_cache: reuse the prompt's KV cache in :meth:`HFCausalLM.loglikelihood`.
        model_id: cache-key identity; derived from the path when not given.
    """

    path: str
    gguf_file: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "cpu"
    n_threads: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=8, ge=1)
    max_batch_tokens: int = Field(default=4096, ge=16)
    pooling: Literal["mean", "last"] = "mean"
    normalize: bool = True
    max_length: int | None = Field(default=None, ge=8)
    cache_dir: str | None = None
    prefix_cache: bool = True
    model_id: str | None = None


def _length_buckets(
    lengths: Sequence[int], batch_size: int, max_batch_tokens: int
) -> Iterator[list[int]]:
    """Indices grouped into batches of similar length (longest first), within both limits."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batch: list[int] = []
    for i in order:
        longest = lengths[batch[0]] if batch else lengths[i]
        if batch and (len(batch) >= batch_size or longest * (len(batch) + 1) > max_batch_tokens):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


class HFCausalLM(LanguageModel):
    """A causal LM run by ``transformers`` on CPU; all four verbs of the protocol.

    Example::

        lm = HFCausalLM("model.gguf", n_threads=2)
        lm.score_next("Question: 2+2=4? Answer:", [" yes", " no"])   # (2,) float32 log-probs
    """

    def __init__(self, path: str | Path, **options: Any) -> None:
        super().__init__()
        self.config = validated(
            HFConfig, {"path": str(path), **options}, "invalid HFCausalLM options"
        )
        transformers: Any = require("transformers", "lm")
        import torch

        if self.config.n_threads is not None:
            torch.set_num_threads(self.config.n_threads)
        folder = self._resolve_folder()
        self._dtype = getattr(torch, self.config.dtype)
        self._device = torch.device(self.config.device)
        try:
            with quiet_loading():
                self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
                self.model = transformers.AutoModelForCausalLM.from_pretrained(
                    str(folder), dtype=self._dtype
                )
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot load model from {folder}: {exc}") from exc
        self.model.to(self._device).eval()
        self._pad_id = self._pick_pad_id()
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self.model_id = self.config.model_id or f"hf:{Path(self.config.path).name}"
        if self.config.dtype != "float32":  # answers differ slightly: keep cache keys apart
            self.model_id += f"@{self.config.dtype}"
        if not self.has_chat_template:
            log.info("%s has no chat template: prompts are used as plain text", self.model_id)

    # --- loading -------------------------------------------------------------------------------
    def _resolve_folder(self) -> Path:
        path = Path(self.config.path).expanduser()
        gguf: Path | None = None
        if self.config.gguf_file is not None:
            gguf = path / self.config.gguf_file
        elif path.suffix == ".gguf":
            gguf = path
        if gguf is None:
            if not path.is_dir():
                raise ConfigError(f"model folder not found: {path}")
            return path
        if self.config.cache_dir is not None:
            cache = Path(self.config.cache_dir)
        else:
            from llmrec.paths import model_cache_dir

            cache = model_cache_dir()
        return convert_gguf(gguf, cache)

    def _long(self, data: Any) -> Any:
        """``data`` as an int64 tensor on the model's device."""
        import torch

        return torch.as_tensor(data, dtype=torch.long, device=self._device)

    def _pick_pad_id(self) -> int:
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0):
            if candidate is not None:
                return int(candidate)
        return 0  # unreachable: the tuple ends in 0

    # --- properties ----------------------------------------------------------------------------
    @property
    def context_length(self) -> int:
        if self.config.max_length is not None:
            return self.config.max_length
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    @property
    def n_parameters(self) -> int:
        """All parameters (embedding tables included, tied weights counted once)."""
        return sum(p.numel() for p in self.model.parameters())

    def apply_chat_template(self, prompt: str) -> str:
        """``prompt`` as one user turn plus the assistant prefix; unchanged without a template."""
        if not self.has_chat_template:
            return prompt
        messages = [{"role": "user", "content": prompt}]
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return str(text)

    # --- tokens --------------------------------------------------------------------------------
    def _ids(self, text: str, *, special: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in self.tokenizer(list(texts))["input_ids"]]

    def _fit(self, ids: list[int], budget: int, *, keep: Literal["end", "start"]) -> list[int]:
        """``ids`` cut to ``budget`` tokens (counting ``stats.truncated``)."""
        if len(ids) <= budget:
            return ids
        self._count(truncated=1)
        if keep == "start":
            return ids[:budget]
        # keep a leading BOS: models like Gemma degrade badly without it
        bos = self.tokenizer.bos_token_id
        if bos is not None and ids and ids[0] == bos:
            return [bos, *ids[len(ids) - budget + 1 :]]
        return ids[len(ids) - budget :]

    def _pad_left(self, seqs: Sequence[list[int]]) -> dict[str, torch.Tensor]:
        """Left-padded ``input_ids``, ``attention_mask``, ``position_ids``: ``(batch, max_len)``."""
        import torch

        width = max(len(s) for s in seqs)
        ids = self._long(torch.full((len(seqs), width), self._pad_id))
        mask = self._long(torch.zeros((len(seqs), width)))
        for row, seq in enumerate(seqs):
            if seq:
                ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
                mask[row, width - len(seq) :] = 1
        # positions count real tokens only, so a padded row sees the same positions as unpadded
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return {"input_ids": ids, "attention_mask": mask, "position_ids": positions}

    # --- encode --------------------------------------------------------------------------------
    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, pooling: Pooling | None = None
    ) -> np.ndarray:
        """``(len(texts), hidden)`` float32 pooled last hidden states; long texts keep the start."""
        import torch

        mode = pooling or self.config.pooling
        if mode not in ("mean", "last"):
            raise ConfigError(f"HFCausalLM pools 'mean' or 'last', not {mode!r}")
        hidden = int(self.model.config.hidden_size)
        if not texts:
            return np.zeros((0, hidden), dtype=np.float32)
        seqs = [self._fit(self._ids(t), self.context_length, keep="start") for t in texts]
        self._count(prompt_tokens=sum(len(s) for s in seqs))
        out = np.zeros((len(texts), hidden), dtype=np.float32)
        body = self.model.base_model  # the decoder without the LM head: no vocab-size logits
        with torch.inference_mode():
            for idx in _length_buckets(
                [len(s) for s in seqs], batch_size, self.config.max_batch_tokens
            ):
                batch = self._pad_left([seqs[i] for i in idx])
                states = body(**batch).last_hidden_state.float()
                if mode == "last":  # left padding puts every row's last token at -1
                    pooled = states[:, -1, :]
                else:
                    weights = batch["attention_mask"].unsqueeze(-1).float()
                    pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
                out[idx] = pooled.cpu().numpy()
        if self.config.normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return check_vectors(out, len(texts), f"{self.model_id} encode")

    # --- score_next ----------------------------------------------------------------------------
    def label_token_ids(self, prompt: str, labels: Sequence[str]) -> list[int]:
        """Token id of each label as it tokenises right after ``prompt`` (see
        :func:`~llmrec.lm.base.single_token_ids`)."""
        return single_token_ids(
            lambda text: self._ids(text, special=False), prompt, labels, self.model_id
        )

    def score_next(self, prompt: str, labels: Sequence[str]) -> np.ndarray:
        """``(len(labels),)`` float32 log-probabilities over the full vocabulary."""
        return self.score_next_batch([prompt], labels)[0]

    def score_next_batch(self, prompts: Sequence[str], labels: Sequence[str]) -> np.ndarray:
        """``(len(prompts), len(labels))`` float32, from length-bucketed left-padded forwards."""
        import torch

        if not prompts:
            return np.zeros((0, len(labels)), dtype=np.float32)
        label_ids = [self.label_token_ids(p, labels) for p in prompts]
        seqs = [self._fit(self._ids(p), self.context_length, keep="end") for p in prompts]
        self._count(prompt_tokens=sum(len(s) for s in seqs))
        out = np.zeros((len(prompts), len(labels)), dtype=np.float32)
        with torch.inference_mode():
            lengths = [len(s) for s in seqs]
            buckets = _length_buckets(lengths, self.config.batch_size, self.config.max_batch_tokens)
            for idx in buckets:
                batch = self._pad_left([seqs[i] for i in idx])
                logits = self.model(**batch, logits_to_keep=1, use_cache=False).logits[:, -1, :]
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                gather = self._long([label_ids[i] for i in idx])
                out[idx] = logprobs.gather(1, gather).cpu().numpy()
        return check_logprobs(out, out.shape, f"{self.model_id} score_next")

    # --- loglikelihood -------------------------------------------------------------------------
    def loglikelihood(self, prompt: str, continuations: Sequence[str]) -> np.ndarray:
        """``(len(continuations),)`` float32 summed log-probabilities of each continuation.

        The prompt runs once; its KV cache is repeated for a batch of continuations. A
        continuation whose tokens do not extend the prompt's tokens (a merge across the
        boundary) is scored on its own full sequence instead.
        """
        if not continuations:
            return np.zeros(0, dtype=np.float32)
        p_ids = self._ids(prompt)
        split: dict[int, list[int]] = {}
        fallback: list[int] = []
        for i, cont in enumerate(continuations):
            full = self._ids(prompt + cont)
            if full[: len(p_ids)] == p_ids:
                split[i] = full[len(p_ids) :]
            else:
                fallback.append(i)
        out = np.zeros(len(continuations), dtype=np.float32)
        if not self.config.prefix_cache:
            fallback = list(range(len(continuations)))
            split = {}
        if split:
            longest = max(len(c) for c in split.values())
            budget = max(1, self.context_length - longest)
            p_fit = self._fit(p_ids, budget, keep="end")
            self._count(prompt_tokens=len(p_fit) + sum(len(c) for c in split.values()))
            scores = self._score_on_prefix(p_fit, [split[i] for i in split])
            out[list(split)] = scores
        for i in fallback:
            out[i] = self._score_full(p_ids, self._ids(prompt + continuations[i]))
        return check_logprobs(out, out.shape, f"{self.model_id} loglikelihood")

    def _score_on_prefix(self, prefix: list[int], conts: list[list[int]]) -> np.ndarray:
        """Summed log-probs of each token list after ``prefix``, sharing the prefix's KV cache."""
        import torch

        out = np.zeros(len(conts), dtype=np.float32)
        with torch.inference_mode():
            res = self.model(self._long([prefix]), use_cache=True, logits_to_keep=1)
            first = torch.log_softmax(res.logits[0, -1, :].float(), dim=-1)
            # transformers 5.x renamed past_key_values to cache (the old name warns)
            prompt_cache = res.cache if self._cache_kw == "cache" else res.past_key_values
            vocab = int(res.logits.shape[-1])
            for chunk in self._cont_chunks(conts, vocab):
                scores = self._score_chunk(prompt_cache, len(prefix), [conts[i] for i in chunk])
                heads = self._long([conts[i][0] if conts[i] else 0 for i in chunk])
                heads_lp = first[heads].cpu().numpy()
                for j, i in enumerate(chunk):
                    out[i] = (heads_lp[j] if conts[i] else 0.0) + scores[j]
        return out

    def _cont_chunks(self, conts: list[list[int]], vocab: int) -> Iterator[list[int]]:
        longest = max(1, max(len(c) for c in conts))
        per_chunk = max(1, _MAX_LOGIT_ELEMENTS // (longest * vocab))
        per_chunk = min(per_chunk, max(1, self.config.max_batch_tokens // longest))
        order = list(range(len(conts)))
        for start in range(0, len(order), per_chunk):
            yield order[start : start + per_chunk]

    def _score_chunk(self, prompt_cache: Any, n_prefix: int, conts: list[list[int]]) -> np.ndarray:
        """Log-probs of tokens 1.. of each continuation (token 0 is scored from the prompt)."""
        import torch

        if max(len(c) for c in conts) <= 1:
            return np.zeros(len(conts), dtype=np.float32)
        width = max(len(c) for c in conts)
        ids = self._long(torch.full((len(conts), width), self._pad_id))
        cont_mask = self._long(torch.zeros((len(conts), width)))
        for row, c in enumerate(conts):  # right padding: every row starts at the same position
            ids[row, : len(c)] = torch.tensor(c, dtype=torch.long)
            cont_mask[row, : len(c)] = 1
        cache = copy.deepcopy(prompt_cache)
        cache.batch_repeat_interleave(len(conts))
        mask = torch.cat([self._long(torch.ones((len(conts), n_prefix))), cont_mask], 1)
        positions = (
            self._long(torch.arange(n_prefix, n_prefix + width)).unsqueeze(0).expand(len(conts), -1)
        )
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

    # --- generate ------------------------------------------------------------------------------
    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        seed: int = 0,
    ) -> list[str]:
        """Greedy (batched) or sampled (per prompt, seeded) completions, stop strings removed."""
        if not prompts:
            return []
        budget = max(1, self.context_length - max_new_tokens)
        seqs = [
            self._fit(
                self._ids(self.apply_chat_template(p), special=not self.has_chat_template),
                budget,
                keep="end",
            )
            for p in prompts
        ]
        self._count(prompt_tokens=sum(len(s) for s in seqs))
        texts = [""] * len(prompts)
        if temperature > 0:  # one prompt at a time so each answer depends only on (prompt, seed)
            for i, seq in enumerate(seqs):
                texts[i] = self._generate_batch([seq], max_new_tokens, temperature, seed)[0]
        else:
            lengths = [len(s) for s in seqs]
            buckets = _length_buckets(lengths, self.config.batch_size, self.config.max_batch_tokens)
            for idx in buckets:
                answers = self._generate_batch([seqs[i] for i in idx], max_new_tokens, 0.0, seed)
                for i, answer in zip(idx, answers, strict=True):
                    texts[i] = answer
        return [cut_at_stops(t, stop) for t in texts]

    def _generate_batch(
        self, seqs: list[list[int]], max_new_tokens: int, temperature: float, seed: int
    ) -> list[str]:
        import torch

        batch = self._pad_left(seqs)
        del batch["position_ids"]  # generate derives positions from the attention mask
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            torch.manual_seed(seed)
            sampling = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
        with torch.inference_mode():
            out = self.model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                pad_token_id=self._pad_id,
                **sampling,
            )
        new = out[:, batch["input_ids"].shape[1] :]
        ends = self._end_ids()
        texts, generated = [], 0
        for row in new.tolist():
            kept = row
            for pos, token in enumerate(row):
                if token in ends:
                    kept = row[:pos]
                    break
            generated += len(kept)
            texts.append(self.tokenizer.decode(kept, skip_special_tokens=True))
        self._count(generated_tokens=generated)
        return texts

    def _end_ids(self) -> set[int]:
        """Token ids that end a generated answer (EOS of the generation config, and padding)."""
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        ends = set(eos) if isinstance(eos, list) else ({eos} if eos is not None else set())
        return {int(e) for e in ends} | {self._pad_id}
