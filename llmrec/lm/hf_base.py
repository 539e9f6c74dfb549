"""What the transformers backend's verbs share: its settings, token helpers and batch sizes.

:class:`HFBase` holds the loaded tokenizer and model (set by
:class:`~llmrec.lm.hf.HFCausalLM`), turns text into token lists that fit the context, pads
batches on the left with explicit ``position_ids``, and resolves the ``auto`` batch sizes for
the device (:func:`~llmrec.runtime.batch_users`, :func:`~llmrec.runtime.batch_tokens`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from llmrec.config import StrictConfig
from llmrec.lm.base import LanguageModel
from llmrec.runtime import BatchSize, batch_tokens, batch_users

if TYPE_CHECKING:
    import torch

__all__ = ["HFBase", "HFConfig"]


class HFConfig(StrictConfig):
    """Settings of :class:`HFCausalLM`.

    Attributes:
        path: a local Hugging Face model folder, or a ``.gguf`` file.
        gguf_file: GGUF file name inside ``path`` (a folder); implied when ``path`` is a file.
        dtype: compute dtype. ``float32`` is the default: see docs/lm.md for the measurement.
        device: ``cpu`` or ``cuda[:N]``, as :class:`~llmrec.runtime.RuntimeOptions` resolve it.
        n_threads: torch intra-op threads; ``None`` leaves torch's setting alone.
        batch_size: most sequences in one forward; ``auto``: 8 on the CPU, 128 on a GPU
            (:func:`~llmrec.runtime.batch_users`).
        max_batch_tokens: most padded tokens (batch x length) in one forward; ``auto``: 4,096
            on the CPU, sized from free GPU memory on a GPU (:func:`~llmrec.runtime.batch_tokens`).
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
    batch_size: BatchSize = "auto"
    max_batch_tokens: BatchSize = "auto"
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


class HFBase(LanguageModel):
    """The tokenizer, model and token helpers every verb of the transformers backend uses."""

    config: HFConfig
    tokenizer: Any
    model: Any
    _device: Any  # torch.device
    _pad_id: int
    _cache_kw: str  # the forward's name for the KV cache (transformers 5.x renamed it)
    #: sequences and padded tokens in one forward, resolved from ``config`` for the device
    batch_size: int
    max_batch_tokens: int

    def _resolve_batches(self) -> None:
        """Fix the ``auto`` batch sizes for the model's device, dtype and shape."""
        device = str(self._device)
        cfg = self.model.config
        self.batch_size = batch_users(self.config.batch_size, device)
        self.max_batch_tokens = batch_tokens(
            self.config.max_batch_tokens,
            device,
            hidden=int(getattr(cfg, "hidden_size", 1024)),
            layers=int(getattr(cfg, "num_hidden_layers", 24)),
            dtype_bytes=int(next(self.model.parameters()).element_size()),
        )

    def _long(self, data: Any) -> Any:
        """``data`` as an int64 tensor on the model's device."""
        import torch

        return torch.as_tensor(data, dtype=torch.long, device=self._device)

    @property
    def context_length(self) -> int:
        if self.config.max_length is not None:
            return self.config.max_length
        return int(getattr(self.model.config, "max_position_embeddings", 2048))

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
