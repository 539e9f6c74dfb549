"""llama.cpp backend: a GGUF file run in-process through ``llama-cpp-python``, on CPU.

One :class:`LlamaCppLM` holds one ``llama_cpp.Llama`` context and implements the whole protocol:

* ``score_next`` evaluates the prompt and reads the last position's logits (the context keeps
  only that row, so Gemma's 262k vocabulary costs 1 MB, not ``n_ctx x vocab``);
* ``loglikelihood`` evaluates the shared prompt once and, for each continuation, decodes only
  the continuation's tokens on top of the prompt's KV cache, then rewinds the cache to the
  prompt (``llama_memory_seq_rm``) for the next one;
* successive prompts that share a prefix (a ranking instruction, a user's history) reuse the KV
  cache of that prefix, as llama.cpp's own completion code does;
* ``generate`` renders the GGUF's chat template when it has one, else uses the prompt as plain
  text, and decodes greedily at ``temperature=0``;
* ``encode`` needs ``embedding=True`` and pools the per-token vectors itself (mean or last).

``llama_cpp`` is imported lazily; without it :class:`~llmrec.errors.MissingExtraError` names the
``llamacpp`` extra. On CPUs that advertise AMX but whose VM does not enable it, llama.cpp builds
with ``-march=native`` crash in ``ggml_backend_amx_mul_mat``: see docs/lm-servers.md for the
build flags.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from llmrec.config import StrictConfig, validated
from llmrec.errors import BackendError, ConfigError, require
from llmrec.lm.base import (
    LanguageModel,
    Pooling,
    check_logprobs,
    check_vectors,
    single_token_ids,
)

log = logging.getLogger(__name__)

__all__ = ["LlamaCppConfig", "LlamaCppLM"]

#: tokens left for a named chat format's markers when a prompt must be cut to fit
_CHAT_OVERHEAD = 64


class LlamaCppConfig(StrictConfig):
    """Settings of :class:`LlamaCppLM`.

    Attributes:
        model_path: a ``.gguf`` file.
        n_threads: CPU threads for decoding and prompt evaluation.
        n_ctx: context window in tokens (prompt plus generated tokens).
        n_batch: most tokens llama.cpp evaluates in one call.
        n_gpu_layers: layers offloaded to a GPU (``-1``: all) where llama-cpp-python was built
            with GPU support; ``0`` (default) keeps everything on the CPU. Give it through the
            runtime options' ``lm_options`` (``{"n_gpu_layers": -1}``).
        seed: sampling seed used when ``generate`` is not given one.
        embedding: build the context with embeddings on; required by :meth:`LlamaCppLM.encode`.
        chat_format: a llama-cpp-python chat format name (``"chatml"``...) that replaces the
            GGUF's own template; ``None`` uses the GGUF template when it has one.
        pooling: default pooling of :meth:`LlamaCppLM.encode`.
        normalize: L2-normalise encodings.
        prefix_cache: reuse the prompt's KV cache in :meth:`LlamaCppLM.loglikelihood`; when
            off, every continuation is scored on its whole sequence from an empty cache
            (slower; kept as the reference the cached path is tested against).
        model_id: cache-key identity; derived from the file name when not given.
    """

    model_path: str
    n_threads: int = Field(default=2, ge=1)
    n_ctx: int = Field(default=2048, ge=16)
    n_batch: int = Field(default=512, ge=1)
    n_gpu_layers: int = Field(default=0, ge=-1)
    seed: int = 0
    embedding: bool = False
    chat_format: str | None = None
    pooling: Literal["mean", "last"] = "mean"
    normalize: bool = True
    prefix_cache: bool = True
    model_id: str | None = None


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64 (float32 loses ~1e-3 over a 262k vocabulary)."""
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    result: np.ndarray = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return result


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class LlamaCppLM(LanguageModel):
    """A GGUF model run in-process by llama.cpp.

    Example::

        lm = LlamaCppLM("SmolLM2-135M-Instruct.Q4_1.gguf", n_threads=2)
        lm.score_next("Pick one. Answer:", [" A", " B"])     # (2,) float32 log-probs
        lm.loglikelihood("The capital of France is", [" Paris", " Rome"])  # (2,) float32
    """

    def __init__(self, model_path: str | Path, **options: Any) -> None:
        super().__init__()
        self.config = validated(
            LlamaCppConfig, {"model_path": str(model_path), **options}, "invalid LlamaCppLM options"
        )
        self._lib: Any = require("llama_cpp", "llamacpp")
        path = Path(self.config.model_path).expanduser()
        if not path.is_file():
            raise ConfigError(f"GGUF file not found: {path}")
        self._llama: Any = self._load(path)
        self._n_vocab = int(self._llama.n_vocab())
        self._bos = int(self._llama.token_bos())
        self._chat = self._chat_formatter()
        self.model_id = self.config.model_id or f"llamacpp:{path.name}"
        if not self.has_chat_template:
            log.info("%s has no chat template: prompts are used as plain text", self.model_id)

    # --- loading -------------------------------------------------------------------------------
    def _load(self, path: Path) -> Any:
        cfg = self.config
        options: dict[str, Any] = {
            "n_threads": cfg.n_threads,
            "n_threads_batch": cfg.n_threads,
            "n_ctx": cfg.n_ctx,
            "n_batch": cfg.n_batch,
            "n_gpu_layers": cfg.n_gpu_layers,
            "seed": cfg.seed,
            "embedding": cfg.embedding,
            "chat_format": cfg.chat_format,
            # a full-size sliding-window cache lets the KV cache rewind to any position
            # (Gemma 3 uses sliding-window layers; a pruned cache cannot drop a tail)
            "swa_full": True,
            "verbose": False,
        }
        if cfg.embedding:
            # token-level vectors: llmrec pools them itself, so both poolings stay available
            options["pooling_type"] = self._lib.LLAMA_POOLING_TYPE_NONE
        try:
            return self._lib.Llama(str(path), **options)
        except (ValueError, RuntimeError) as exc:
            raise BackendError(f"llama.cpp cannot load {path}: {exc}") from exc

    def _chat_formatter(self) -> Any:
        """A formatter rendering one user turn, or ``None`` for plain-text prompting."""
        chat_format = self.config.chat_format
        if chat_format is not None:
            return chat_format  # a named format: generate() goes through create_chat_completion
        template = self._llama.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        model = self._llama._model  # token texts are only exposed on the model wrapper
        eos_id = int(self._llama.token_eos())
        eos = model.token_get_text(eos_id) if eos_id != -1 else ""
        bos = model.token_get_text(self._bos) if self._bos != -1 else ""
        return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)

    # --- properties ----------------------------------------------------------------------------
    @property
    def context_length(self) -> int:
        # llama.cpp may round the context up (to a multiple of 256) while llama-cpp-python
        # sizes its token buffer by the requested n_ctx: the smaller one is the real limit
        return min(self.config.n_ctx, int(self.llama.n_ctx()))

    @property
    def has_chat_template(self) -> bool:
        return self._chat is not None

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama`` (for benchmarks and advanced use)."""
        if self._llama is None:
            raise BackendError(f"{self.model_id} is closed")
        return self._llama

    def close(self) -> None:
        if self._llama is not None:
            self._llama.close()
            self._llama = None

    # --- tokens --------------------------------------------------------------------------------
    def _ids(self, text: str, *, special: bool = True) -> list[int]:
        """Token ids of ``text``; ``special`` adds BOS where the model wants one and parses
        special tokens (chat markers) in the text."""
        return list(self.llama.tokenize(text.encode("utf-8"), add_bos=special, special=special))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(self._ids(t)) for t in texts]

    def _fit(self, ids: list[int], budget: int) -> list[int]:
        """``ids`` cut to their last ``budget`` tokens (a leading BOS kept), counting it."""
        if len(ids) <= budget:
            return ids
        if budget < 1:
            raise BackendError(
                f"{self.model_id}: no room left in a {self.context_length}-token "
                "context for the prompt"
            )
        self._count(truncated=1)
        if ids and ids[0] == self._bos and budget > 1:
            return [self._bos, *ids[len(ids) - budget + 1 :]]
        return ids[len(ids) - budget :]

    def label_token_ids(self, prompt: str, labels: Sequence[str]) -> list[int]:
        """Token id of each label as it tokenises right after ``prompt`` (see
        :func:`~llmrec.lm.base.single_token_ids`)."""
        return single_token_ids(
            lambda text: self._ids(text, special=False), prompt, labels, self.model_id
        )

    # --- evaluation primitives -----------------------------------------------------------------
    def _logits_after(self, ids: list[int]) -> np.ndarray:
        """``(vocab,)`` float32 next-token logits after ``ids``, reusing any cached prefix."""
        llama = self.llama
        if not ids:
            raise BackendError(f"{self.model_id}: cannot score after an empty prompt")
        cached = llama.input_ids[: llama.n_tokens]
        keep = min(_common_prefix(cached.tolist(), ids), len(ids) - 1)
        llama.n_tokens = keep  # eval() drops the KV cache from here on
        try:
            llama.eval(ids[keep:])
        except RuntimeError as exc:
            llama.reset()
            raise BackendError(f"{self.model_id}: llama.cpp decode failed: {exc}") from exc
        row = self._lib.llama_get_logits_ith(llama.ctx, -1)
        return np.ctypeslib.as_array(row, shape=(self._n_vocab,)).copy()

    def _decode_all(self, tokens: list[int], start: int, keep_from: int = 0) -> np.ndarray:
        """``(len(tokens) - keep_from, vocab)`` float32 logits of ``tokens[keep_from:]``, all
        of ``tokens`` decoded at positions ``start...`` on top of the cache (only the kept
        rows are computed). The caller rewinds the cache afterwards."""
        lib, llama = self._lib, self.llama
        out = np.empty((len(tokens) - keep_from, self._n_vocab), dtype=np.float32)
        step = int(self.llama.n_batch)
        for lo in range(0, len(tokens), step):
            chunk = tokens[lo : lo + step]
            batch = lib.llama_batch_init(len(chunk), 0, 1)
            try:
                for i, tok in enumerate(chunk):
                    batch.token[i] = tok
                    batch.pos[i] = start + lo + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = lo + i >= keep_from
                batch.n_tokens = len(chunk)
                code = lib.llama_decode(llama.ctx, batch)
                if code != 0:
                    raise BackendError(f"{self.model_id}: llama_decode returned {code}")
                for i in range(max(0, keep_from - lo), len(chunk)):
                    row = lib.llama_get_logits_ith(llama.ctx, i)
                    out[lo + i - keep_from] = np.ctypeslib.as_array(row, shape=(self._n_vocab,))
            finally:
                lib.llama_batch_free(batch)
        return out

    def _rewind(self, n_tokens: int) -> None:
        """Drop cached positions ``>= n_tokens`` so the cache holds exactly the prefix."""
        memory = self._lib.llama_get_memory(self.llama.ctx)
        if not self._lib.llama_memory_seq_rm(memory, -1, n_tokens, -1):
            self.llama.reset()  # the cache could not be cut: start cold next time
        else:
            self.llama.n_tokens = min(self.llama.n_tokens, n_tokens)

    # --- score_next ----------------------------------------------------------------------------
    def score_next(self, prompt: str, labels: Sequence[str]) -> np.ndarray:
        """``(len(labels),)`` float32 log-probabilities over the full vocabulary."""
        return self.score_next_batch([prompt], labels)[0]

    def score_next_batch(self, prompts: Sequence[str], labels: Sequence[str]) -> np.ndarray:
        """``(len(prompts), len(labels))`` float32; prompts run one after another, sharing the
        KV cache of whatever prefix consecutive prompts have in common."""
        out = np.zeros((len(prompts), len(labels)), dtype=np.float32)
        for row, prompt in enumerate(prompts):
            label_ids = self.label_token_ids(prompt, labels)
            ids = self._fit(self._ids(prompt), self.context_length)
            self._count(prompt_tokens=len(ids))
            logprobs = _log_softmax(self._logits_after(ids))
            out[row] = logprobs[label_ids]
        return check_logprobs(out, out.shape, f"{self.model_id} score_next")

    # --- loglikelihood -------------------------------------------------------------------------
    def _split(self, p_ids: list[int], prompt: str, cont: str) -> tuple[list[int], list[int]]:
        """(context ids, continuation ids): where the tokens of ``prompt + cont`` leave the
        prompt's tokens (a merge across the boundary moves the split left)."""
        full = self._ids(prompt + cont)
        cut = _common_prefix(p_ids, full)
        if cut == len(full):  # empty continuation
            return full, []
        if cut == 0:
            raise BackendError(
                f"{self.model_id}: the prompt must be non-empty to score "
                "continuations (the first token has no context)"
            )
        return full[:cut], full[cut:]

    def loglikelihood(self, prompt: str, continuations: Sequence[str]) -> np.ndarray:
        """``(len(continuations),)`` float32 summed log-probabilities of each continuation.

        The prompt is evaluated once; each continuation decodes only its own tokens on the
        prompt's KV cache. A prompt too long for the context keeps its end (and BOS).
        """
        out = np.zeros(len(continuations), dtype=np.float32)
        if not continuations:
            return out
        p_ids = self._ids(prompt)
        pairs = [self._split(p_ids, prompt, c) for c in continuations]
        longest = max(len(c) for _, c in pairs)
        if longest >= self.context_length:
            raise BackendError(
                f"{self.model_id}: a continuation of {longest} tokens does not "
                f"fit a {self.context_length}-token context"
            )
        first_logprobs: dict[tuple[int, ...], tuple[list[int], np.ndarray]] = {}
        for i, (ctx, cont) in enumerate(pairs):
            if not cont:
                continue
            if not self.config.prefix_cache:
                out[i] = self._score_full(ctx, cont)
                continue
            key = tuple(ctx)
            if key not in first_logprobs:
                fitted = self._fit(ctx, self.context_length - longest)
                self._count(prompt_tokens=len(fitted))
                first_logprobs[key] = (fitted, _log_softmax(self._logits_after(fitted)))
            fitted, first = first_logprobs[key]
            # _logits_after for another context may have moved the cache: re-seat this one
            if list(self.llama.input_ids[: self.llama.n_tokens]) != fitted:
                self._logits_after(fitted)
            out[i] = first[cont[0]] + self._score_tail(len(fitted), cont)
            self._count(prompt_tokens=len(cont))
        return check_logprobs(out, out.shape, f"{self.model_id} loglikelihood")

    def _score_full(self, ctx: list[int], cont: list[int]) -> float:
        """Summed log-probs of ``cont`` after ``ctx``, from one decode of the whole sequence."""
        ctx = self._fit(ctx, self.context_length - len(cont))
        self._count(prompt_tokens=len(ctx) + len(cont))
        self._rewind(0)
        try:
            logprobs = _log_softmax(self._decode_all([*ctx, *cont[:-1]], 0, len(ctx) - 1))
        finally:
            self._rewind(0)
        return float(logprobs[np.arange(len(cont)), cont].sum())

    def _score_tail(self, n_prefix: int, cont: list[int]) -> float:
        """Summed log-probs of ``cont[1:]`` given the cached prefix and ``cont[:-1]``."""
        if len(cont) < 2:
            return 0.0
        try:
            logprobs = _log_softmax(self._decode_all(cont[:-1], n_prefix))
        finally:
            self._rewind(n_prefix)
        return float(logprobs[np.arange(len(cont) - 1), cont[1:]].sum())

    # --- generate ------------------------------------------------------------------------------
    def _render(self, prompt: str) -> tuple[str, list[str]]:
        """(text to complete, extra stop strings) for one user prompt (GGUF template)."""
        if self._chat is None:
            return prompt, []
        response = self._chat(messages=[{"role": "user", "content": prompt}])
        stops = response.stop if isinstance(response.stop, list) else [response.stop]
        return str(response.prompt), [s for s in stops if s]

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        stop: Sequence[str] = (),
        seed: int = 0,
    ) -> list[str]:
        """One completion per prompt; greedy at ``temperature=0``; text from the first stop
        string on is removed. A prompt too long keeps its end, leaving room to generate."""
        answers: list[str] = []
        sampling = {
            "max_tokens": max_new_tokens,
            "temperature": temperature,
            "seed": seed,
            "repeat_penalty": 1.0,
        }
        for prompt in prompts:
            self.llama.reset()  # completion manages the cache itself from position 0
            try:
                if isinstance(self._chat, str):
                    result = self._named_chat(prompt, list(stop), sampling)
                    answer = str(result["choices"][0]["message"]["content"] or "")
                else:
                    text, template_stops = self._render(prompt)
                    ids = self._fit(self._ids(text), self.context_length - max_new_tokens)
                    result = self.llama.create_completion(
                        prompt=ids, stop=[*stop, *template_stops] or None, **sampling
                    )
                    answer = str(result["choices"][0]["text"])
            except (ValueError, RuntimeError) as exc:
                raise BackendError(f"{self.model_id}: generation failed: {exc}") from exc
            for s in stop:  # llama.cpp already cuts at stops; this keeps the contract explicit
                answer = answer.split(s, 1)[0]
            usage = result["usage"]
            self._count(prompt_tokens=int(usage["prompt_tokens"]),
                        generated_tokens=int(usage["completion_tokens"]))  # fmt: skip
            answers.append(answer)
        return answers

    def _named_chat(self, prompt: str, stop: list[str], sampling: dict[str, Any]) -> Any:
        """Chat completion through a named llama-cpp-python format. Its template cannot be
        rendered on its own, so an over-long prompt is cut (keeping its end) to leave
        ``_CHAT_OVERHEAD`` tokens for the template's markers."""
        budget = self.context_length - int(sampling["max_tokens"]) - _CHAT_OVERHEAD
        ids = self._ids(prompt, special=False)
        if len(ids) > budget:
            self._count(truncated=1)
            tail = ids[len(ids) - max(1, budget) :]
            prompt = self.llama.detokenize(tail).decode("utf-8", errors="ignore")
        messages = [{"role": "user", "content": prompt}]
        return self.llama.create_chat_completion(messages, stop=stop or None, **sampling)

    # --- encode --------------------------------------------------------------------------------
    def encode(
        self, texts: Sequence[str], *, batch_size: int = 64, pooling: Pooling | None = None
    ) -> np.ndarray:
        """``(len(texts), n_embd)`` float32 pooled final hidden states; a text longer than
        ``n_batch`` tokens keeps its start (counted in ``stats.truncated``)."""
        mode = pooling or self.config.pooling
        if mode not in ("mean", "last"):
            raise ConfigError(f"LlamaCppLM pools 'mean' or 'last', not {mode!r}")
        if not self.config.embedding:
            raise BackendError(
                f"{self.model_id} was loaded without embedding=True; "
                "create LlamaCppLM(..., embedding=True) to encode"
            )
        dim = int(self.llama.n_embd())
        out = np.zeros((len(texts), dim), dtype=np.float32)
        for lo in range(0, len(texts), max(1, batch_size)):
            chunk = list(texts[lo : lo + batch_size])
            counts = self.count_tokens(chunk)
            limit = int(self.llama.n_batch)
            self._count(prompt_tokens=sum(min(n, limit) for n in counts),
                        truncated=sum(n > limit for n in counts))  # fmt: skip
            for j, text in enumerate(chunk):
                # one text per call: llama-cpp-python 0.3.36 mixes up the token vectors of
                # several sequences decoded together without pooling
                vectors = self.llama.embed(text, truncate=True)
                arr = np.asarray(vectors, dtype=np.float32).reshape(-1, dim)
                out[lo + j] = arr.mean(axis=0) if mode == "mean" else arr[-1]
        self.llama.reset()  # embed() clears the KV cache; the prefix bookkeeping must follow
        if self.config.normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return check_vectors(out, len(texts), f"{self.model_id} encode")
