"""Semantic IDs: item vectors turned into short tuples of discrete codes.

Two tokenisers share one output, :class:`SemanticIDs`:

* :class:`RQKMeans` — residual k-means: level 1 clusters the vectors, level 2 clusters what
  level 1 left unexplained, and so on (optionally *balanced*, every code holding about
  ``n / K`` items, which spreads items over the codebook);
* :class:`RQVAE` — residual quantisation inside a small autoencoder (torch), with codebooks
  initialised by k-means on the first latents and dead codes reset to live residuals, the two
  usual guards against codebook collapse.

Both append a final de-duplication digit: items whose ``L`` codes coincide get ``0, 1, 2, ...``
so every item's tuple is unique. :class:`QuantDiagnostics` records what a run did: collision
rate before de-duplication, per-level usage, entropy and dead codes, reconstruction error.

Example::

    ids = RQKMeans(levels=3, codebook_size=32).fit(vectors)    # vectors: (n_items, dim)
    ids.codes            # (n_items, 4) int64, last column the de-duplication digit
    ids.diagnostics.collision_rate
    ids.save("ids/")     # ids/semantic_ids.csv (+ .parquet) and ids/codebooks.safetensors
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from llmrec._io import atomic_write_text, dumps_json
from llmrec.config import StrictConfig, make_config
from llmrec.errors import ConfigError, DataError
from llmrec.models.saved import FLOAT, INTEGER, expect
from llmrec.paradigms.tokens.kmeans import kmeans
from llmrec.runtime import RuntimeOptions, runtime_options

MAPPING_CSV = "semantic_ids.csv"
MAPPING_PARQUET = "semantic_ids.parquet"
CODEBOOKS_FILE = "codebooks.safetensors"
META_FILE = "semantic_ids.json"


def default_codebook_size(n_items: int, levels: int) -> int:
    """A power of two near ``sqrt(n_items)``, clipped to ``[8, 256]``.

    With ``L >= 2`` levels this leaves ``K**L >> n_items`` tuples (few collisions) while each
    code of level 1 still covers enough items to be learned from (1,682 items -> 32; 100k -> 256).
    """
    if n_items < 1 or levels < 1:
        raise ConfigError("need at least one item and one level")
    return int(np.clip(2 ** round(math.log2(math.sqrt(n_items))), 8, 256))


class QuantizerConfig(StrictConfig):
    """Settings shared by both tokenisers.

    Attributes:
        levels: ``L``, codes per item before the de-duplication digit.
        codebook_size: ``K`` codes per level; ``None`` picks :func:`default_codebook_size`.
        normalize: scale vectors to unit length first (cosine geometry, as text encoders use).
        seed: seeds k-means initialisation and training.
    """

    levels: int = Field(3, ge=1, le=8)
    codebook_size: int | None = Field(None, ge=2, le=4096)
    normalize: bool = True
    seed: int = 0

    def k_for(self, n_items: int) -> int:
        return self.codebook_size or default_codebook_size(n_items, self.levels)


@dataclass
class QuantDiagnostics:
    """What a quantisation run did.

    Attributes:
        n_items: items quantised.
        levels, codebook_size: ``L`` and ``K``.
        collision_rate: share of items whose ``L``-tuple another item also has (before
            de-duplication); 0 means the codes alone already identify every item.
        unique_tuples: distinct ``L``-tuples.
        max_collisions: size of the largest group of items sharing a tuple (the range of the
            de-duplication digit).
        usage: per level, share of the ``K`` codes used by at least one item.
        entropy_bits: per level, entropy of the code distribution in bits (``log2 K`` is ideal).
        perplexity: per level, ``2 ** entropy_bits`` (effective number of codes).
        dead_codes: per level, codes used by no item.
        recon_mse: mean squared error per dimension between the (normalised) input vectors
            and their reconstruction from the codes.
        recon_rel: ``sum ||x - x_hat||^2 / sum ||x||^2`` (0 perfect, 1 as bad as predicting 0).
    """

    n_items: int
    levels: int
    codebook_size: int
    collision_rate: float
    unique_tuples: int
    max_collisions: int
    usage: list[float]
    entropy_bits: list[float]
    perplexity: list[float]
    dead_codes: list[int]
    recon_mse: float
    recon_rel: float
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """A few readable lines for logs and the CLI."""
        lines = [
            f"{self.n_items} items, {self.levels} levels x {self.codebook_size} codes",
            f"collision rate before dedup {self.collision_rate:.3f} "
            f"({self.unique_tuples} unique tuples, largest group {self.max_collisions})",
            f"reconstruction: mse {self.recon_mse:.5f}, relative {self.recon_rel:.3f}",
        ]
        for lvl in range(self.levels):
            lines.append(
                f"level {lvl + 1}: usage {self.usage[lvl]:.2f}, entropy "
                f"{self.entropy_bits[lvl]:.2f}/{math.log2(self.codebook_size):.2f} bits, "
                f"dead {self.dead_codes[lvl]}"
            )
        return "\n".join(lines)


@dataclass
class SemanticIDs:
    """Every item's unique code tuple plus the codebooks that produced it.

    Attributes:
        codes: ``(n_items, L + 1)`` int64; column ``l < L`` is the level-``l`` code in
            ``[0, K)``, the last column the de-duplication digit in ``[0, max_collisions)``.
        codebooks: ``L`` arrays ``(K, d)`` float32 (in the input space for RQ-KMeans, in the
            latent space for RQ-VAE).
        diagnostics: see :class:`QuantDiagnostics`.
        method: ``"rq-kmeans"`` or ``"rq-vae"``.
        item_ids: ``(n_items,)`` original item ids, written into the mapping table.
    """

    codes: np.ndarray
    codebooks: list[np.ndarray]
    diagnostics: QuantDiagnostics
    method: str
    item_ids: np.ndarray | None = None

    @property
    def n_items(self) -> int:
        return int(self.codes.shape[0])

    @property
    def length(self) -> int:
        """Tokens per item, ``L + 1``."""
        return int(self.codes.shape[1])

    @property
    def vocab_sizes(self) -> list[int]:
        """Codes per position: ``K`` for each level, then the de-duplication range."""
        k = self.diagnostics.codebook_size
        return [k] * (self.length - 1) + [max(1, int(self.codes[:, -1].max()) + 1)]

    def lookup(self) -> dict[tuple[int, ...], int]:
        """``tuple -> item index`` (unique by construction)."""
        return {tuple(row): i for i, row in enumerate(self.codes.tolist())}

    def as_frame(self) -> Any:
        """The mapping table: ``item_index, item_id, c0 .. cL, semantic_id`` (a pandas frame).

        ``semantic_id`` is the tuple written ``"12-3-40-0"``, a string key to join on.
        """
        import pandas as pd

        ids = self.item_ids if self.item_ids is not None else np.arange(self.n_items)
        frame = pd.DataFrame({"item_index": np.arange(self.n_items), "item_id": ids})
        for col in range(self.length):
            frame[f"c{col}"] = self.codes[:, col]
        frame["semantic_id"] = ["-".join(map(str, row)) for row in self.codes.tolist()]
        return frame

    def save(self, folder: str | Path, *, parquet: bool = True) -> Path:
        """Write the mapping table (CSV, and Parquet if pyarrow is there), the codebooks
        (safetensors) and the diagnostics (JSON) into ``folder``."""
        from safetensors.numpy import save_file

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        frame = self.as_frame()
        frame.to_csv(out / MAPPING_CSV, index=False)
        if parquet:
            # CSV is enough; Parquet needs pyarrow
            with contextlib.suppress(ImportError):
                frame.astype({"item_id": str}).to_parquet(out / MAPPING_PARQUET, index=False)
        books = {f"level{i}": np.ascontiguousarray(b) for i, b in enumerate(self.codebooks)}
        save_file(books, str(out / CODEBOOKS_FILE))
        meta = {"method": self.method, "diagnostics": self.diagnostics.as_dict()}
        atomic_write_text(out / META_FILE, dumps_json(meta))
        return out

    @classmethod
    def load(cls, folder: str | Path) -> SemanticIDs:
        """Read what :meth:`save` wrote."""
        import pandas as pd
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        src = Path(folder)
        try:
            frame = pd.read_csv(src / MAPPING_CSV, dtype={"item_id": str})
            meta = json.loads((src / META_FILE).read_text(encoding="utf-8"))
            cols = sorted((c for c in frame.columns if c[0] == "c" and c[1:].isdigit()), key=_col)
            books = load_file(str(src / CODEBOOKS_FILE))
            return cls(
                codes=frame[cols].to_numpy(np.int64),
                codebooks=[books[f"level{i}"] for i in range(len(books))],
                diagnostics=QuantDiagnostics(**meta["diagnostics"]),
                method=meta["method"],
                item_ids=frame["item_id"].to_numpy(object),
            )
        except FileNotFoundError as exc:
            raise DataError(f"{src} holds no semantic IDs ({exc.filename} missing)") from None
        except (SafetensorError, OSError, KeyError, TypeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise DataError(f"{src} holds damaged semantic IDs: {first}") from None


def semantic_ids_from_state(
    state: Mapping[str, np.ndarray], n_items: int, method: str
) -> SemanticIDs:
    """The semantic IDs a model saved as arrays ``codes`` ``(n_items, L + 1)`` and
    ``codebook0`` .. ``codebook{L-1}`` ``(K, d)``, checked: codes in range of their codebooks
    (a damaged state is a :class:`ConfigError`)."""
    codes = expect(state, "codes", INTEGER, (n_items, None)).astype(np.int64)
    if codes.shape[1] < 2:
        raise ConfigError("array 'codes' needs a code column and the de-duplication digit")
    books = [expect(state, f"codebook{i}", FLOAT, (None, None)) for i in range(codes.shape[1] - 1)]
    k = int(books[0].shape[0])
    if any(b.shape[0] != k for b in books) or k == 0:
        raise ConfigError("the saved codebooks differ in size")
    if len(codes) and (codes.min() < 0 or codes[:, :-1].max() >= k):
        raise ConfigError(f"array 'codes' holds codes outside 0..{k - 1}")
    diag = diagnose(codes[:, :-1], k, np.zeros((1, 1)), np.zeros((1, 1)))
    return SemanticIDs(codes, books, diag, method)


def _col(name: str) -> int:
    return int(name[1:])


# --- shared pieces ------------------------------------------------------------------------------
def prepare_vectors(vectors: np.ndarray, normalize: bool) -> np.ndarray:
    """Validate ``(n, d)`` vectors and return float64 (unit-length if ``normalize``)."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise DataError(f"item vectors must be a non-empty (n_items, dim) array, got {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("item vectors hold NaN or infinite values")
    if normalize:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def dedup_digit(codes: np.ndarray) -> np.ndarray:
    """``(n,)`` int64: ``0, 1, 2, ...`` among items sharing the same row of ``codes``
    (in item order), so ``[codes, digit]`` is unique."""
    _, inverse = np.unique(codes, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    digit = np.zeros(len(codes), dtype=np.int64)
    seen: dict[int, int] = {}
    for i, group in enumerate(inverse.tolist()):
        digit[i] = seen.get(group, 0)
        seen[group] = digit[i] + 1
    return digit


def diagnose(
    codes: np.ndarray, k: int, x: np.ndarray, x_hat: np.ndarray, **extra: float
) -> QuantDiagnostics:
    """Diagnostics of ``(n, L)`` codes (before de-duplication) and a reconstruction."""
    n, levels = codes.shape
    _, counts = np.unique(codes, axis=0, return_counts=True)
    usage, entropy, dead = [], [], []
    for lvl in range(levels):
        c = np.bincount(codes[:, lvl], minlength=k)
        p = c[c > 0] / n
        usage.append(float((c > 0).mean()))
        entropy.append(float(-(p * np.log2(p)).sum()))
        dead.append(int((c == 0).sum()))
    err = ((x - x_hat) ** 2).sum()
    return QuantDiagnostics(
        n_items=n,
        levels=levels,
        codebook_size=k,
        collision_rate=float(counts[counts > 1].sum() / n),
        unique_tuples=len(counts),
        max_collisions=int(counts.max()),
        usage=usage,
        entropy_bits=entropy,
        perplexity=[float(2**e) for e in entropy],
        dead_codes=dead,
        recon_mse=float(err / x.size),
        recon_rel=float(err / max((x**2).sum(), 1e-12)),
        extra=dict(extra),
    )


def _finish(
    codes: np.ndarray,
    books: list[np.ndarray],
    diag: QuantDiagnostics,
    method: str,
    item_ids: np.ndarray | None,
) -> SemanticIDs:
    full = np.concatenate([codes, dedup_digit(codes)[:, None]], axis=1)
    return SemanticIDs(full.astype(np.int64), books, diag, method, item_ids)


# --- RQ-KMeans ----------------------------------------------------------------------------------
class RQKMeansConfig(QuantizerConfig):
    """Residual k-means settings (see :class:`QuantizerConfig`).

    Attributes:
        balanced: capacity-constrained assignment (each code holds about ``n / K`` items).
        iters: Lloyd iterations per level.
    """

    balanced: bool = False
    iters: int = Field(30, ge=1)


class RQKMeans:
    """Residual k-means tokeniser. ``fit(vectors)`` returns :class:`SemanticIDs`."""

    method = "rq-kmeans"

    def __init__(
        self, config: RQKMeansConfig | Mapping[str, Any] | None = None, **overrides: Any
    ) -> None:
        self.config = make_config(RQKMeansConfig, config, overrides, "rq-kmeans")

    def fit(self, vectors: np.ndarray, item_ids: np.ndarray | None = None) -> SemanticIDs:
        """Quantise ``(n_items, dim)`` vectors; the result is deterministic in ``seed``."""
        cfg = self.config
        x = prepare_vectors(vectors, cfg.normalize)
        k = cfg.k_for(len(x))
        rng = np.random.default_rng(cfg.seed)
        residual = x.copy()
        codes = np.zeros((len(x), cfg.levels), dtype=np.int64)
        books = []
        for lvl in range(cfg.levels):
            book, labels = kmeans(residual, k, iters=cfg.iters, balanced=cfg.balanced, rng=rng)
            codes[:, lvl] = labels
            residual = residual - book[labels]
            books.append(book)
        diag = diagnose(codes, k, x, x - residual)
        return _finish(codes, books, diag, self.method, item_ids)


# --- RQ-VAE -------------------------------------------------------------------------------------
class RQVAEConfig(QuantizerConfig):
    """RQ-VAE settings (see :class:`QuantizerConfig`).

    Attributes:
        latent_dim: width of the quantised latent.
        hidden_dim: width of the encoder's and decoder's hidden layer.
        epochs: passes over the items.
        batch_size: items per step.
        lr: Adam learning rate.
        beta: commitment weight (pulls encoder outputs toward their codes).
        reset_every: epochs between dead-code resets (codes unused in the epoch restart at a
            random residual of the last batch); 0 disables; no reset in the last fifth of
            training, so the final codes are the ones trained.
    """

    latent_dim: int = Field(32, ge=2)
    hidden_dim: int = Field(256, ge=2)
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(256, ge=8)
    lr: float = Field(1e-3, gt=0)
    beta: float = Field(0.25, ge=0)
    reset_every: int = Field(10, ge=0)


class RQVAE:
    """RQ-VAE tokeniser (torch). ``fit(vectors)`` returns :class:`SemanticIDs` whose codebooks
    live in the latent space; ``diagnostics.extra`` holds ``dead_code_resets``."""

    method = "rq-vae"

    def __init__(
        self,
        config: RQVAEConfig | Mapping[str, Any] | None = None,
        *,
        runtime: RuntimeOptions | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        self.config = make_config(RQVAEConfig, config, overrides, "rq-vae")
        self.runtime = runtime_options(runtime)

    def fit(self, vectors: np.ndarray, item_ids: np.ndarray | None = None) -> SemanticIDs:
        from llmrec.models._torch import torch_session
        from llmrec.nets.rqvae import RQVAENet, train_rqvae

        cfg = self.config
        x = prepare_vectors(vectors, cfg.normalize)
        k = cfg.k_for(len(x))
        device = self.runtime.torch_device()
        with torch_session(self.runtime, cfg.seed) as torch:
            net = RQVAENet(x.shape[1], k, cfg).to(device)
            data = torch.as_tensor(x, dtype=torch.float32).to(device)
            resets = train_rqvae(net, data, cfg)
            with torch.no_grad():
                x_hat, codes, _ = net(data)
            codes_np = codes.cpu().numpy().astype(np.int64)
            books = [b.detach().cpu().numpy().copy() for b in net.codebooks]
            x_hat_np = x_hat.cpu().numpy().astype(np.float64)
        diag = diagnose(codes_np, k, x, x_hat_np, dead_code_resets=float(resets))
        return _finish(codes_np, books, diag, self.method, item_ids)
