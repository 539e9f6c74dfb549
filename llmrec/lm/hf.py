"""Hugging Face ``transformers`` backend for causal LMs: local folders and GGUF files.

A GGUF file is dequantised by transformers (slow: docs/benchmarks.md); the result is saved once
as a safetensors folder under the model cache and every later load reads that folder. The
conversion is written to a temporary folder and renamed into place, so an interrupted
conversion never leaves a half-written cache entry.

Batches are bucketed by length and left-padded with explicit ``position_ids``; forwards ask only
for the logits they need (``logits_to_keep``), which matters for Gemma's 262k-token vocabulary.
:meth:`HFCausalLM.loglikelihood_batch` runs many users' prompts in one forward and scores each
prompt's continuations on copies of its KV cache (:mod:`llmrec.lm.hf_scoring`). Batch sizes
default to ``auto``: the CPU's 8 sequences and 4,096 tokens, sized from the device on a GPU.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.config import validated
from llmrec.errors import BackendError, ConfigError, require
from llmrec.lm.base import (
    Pooling,
    check_logprobs,
    check_vectors,
    cut_at_stops,
    quiet_loading,
    single_token_ids,
)
from llmrec.lm.gguf import convert_gguf, converted_dir
from llmrec.lm.hf_base import HFConfig, _length_buckets
from llmrec.lm.hf_scoring import HFScoring

__all__ = ["HFCausalLM", "HFConfig", "convert_gguf", "converted_dir"]

log = logging.getLogger(__name__)


class HFCausalLM(HFScoring):
    """A causal LM run by ``transformers`` on the CPU or a GPU; all four verbs of the protocol.

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
        self._resolve_batches()
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

    def _pick_pad_id(self) -> int:
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0):
            if candidate is not None:
                return int(candidate)
        return 0  # unreachable: the tuple ends in 0

    # --- properties ----------------------------------------------------------------------------
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
            for idx in _length_buckets([len(s) for s in seqs], batch_size, self.max_batch_tokens):
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
            buckets = _length_buckets(lengths, self.batch_size, self.max_batch_tokens)
            for idx in buckets:
                batch = self._pad_left([seqs[i] for i in idx])
                logits = self.model(**batch, logits_to_keep=1, use_cache=False).logits[:, -1, :]
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                gather = self._long([label_ids[i] for i in idx])
                out[idx] = logprobs.gather(1, gather).cpu().numpy()
        return check_logprobs(out, out.shape, f"{self.model_id} score_next")

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
            buckets = _length_buckets(lengths, self.batch_size, self.max_batch_tokens)
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
