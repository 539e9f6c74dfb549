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
from pydantic import BaseModel, ConfigDict, Field

from llmrec import progress
from llmrec._io import atomic_write_text, dumps_json
from llmrec.errors import ConfigError, DataError
from llmrec.models.saved import FLOAT, INTEGER, expect

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


class QuantizerConfig(BaseModel):
    """Settings shared by both tokenisers.

    Attributes:
        levels: ``L``, codes per item before the de-duplication digit.
        codebook_size: ``K`` codes per level; ``None`` picks :func:`default_codebook_size`.
        normalize: scale vectors to unit length first (cosine geometry, as text encoders use).
        seed: seeds k-means initialisation and training.
    """

    model_config = ConfigDict(extra="forbid")

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


# --- k-means -------------------------------------------------------------------------------------
def kmeans(
    x: np.ndarray,
    k: int,
    *,
    iters: int = 30,
    balanced: bool = False,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means with k-means++ seeding.

    Args:
        x: ``(n, d)`` float32 points.
        k: clusters; when ``k > n`` the surplus centroids duplicate points (and stay unused).
        balanced: assign under a capacity of ``ceil(n / k)`` points per cluster (greedy by
            distance), so codes are used evenly.

    Returns:
        ``(centroids (k, d) float32, labels (n,) int64)``.
    """
    n = len(x)
    centroids = _kmeans_pp(x, k, rng)
    labels = np.zeros(n, dtype=np.int64)
    for it in range(iters):
        dist = _sq_dist(x, centroids)
        new = _balanced_assign(dist, k) if balanced else dist.argmin(axis=1)
        if it and np.array_equal(new, labels):
            break
        labels = new
        centroids = _update_centroids(x, labels, centroids, dist)
    return centroids.astype(np.float32), labels


def _sq_dist(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    centroids = np.empty((k, x.shape[1]), dtype=np.float64)
    centroids[0] = x[rng.integers(n)]
    closest = _sq_dist(x, centroids[:1])[:, 0]
    for j in range(1, k):
        total = closest.sum()
        idx = rng.choice(n, p=closest / total) if total > 0 else rng.integers(n)
        centroids[j] = x[idx]
        closest = np.minimum(closest, _sq_dist(x, centroids[j : j + 1])[:, 0])
    return centroids


def _balanced_assign(dist: np.ndarray, k: int) -> np.ndarray:
    """Nearest centroid under a capacity of ``ceil(n / k)``: pairs taken closest first."""
    n = dist.shape[0]
    cap = math.ceil(n / k)
    order = np.argsort(dist, axis=None, kind="stable")
    labels = np.full(n, -1, dtype=np.int64)
    load = np.zeros(k, dtype=np.int64)
    left = n
    for flat in order:
        point, cluster = divmod(int(flat), k)
        if labels[point] < 0 and load[cluster] < cap:
            labels[point] = cluster
            load[cluster] += 1
            left -= 1
            if not left:
                break
    return labels


def _update_centroids(
    x: np.ndarray,
    labels: np.ndarray,
    old: np.ndarray,
    dist: np.ndarray,
) -> np.ndarray:
    k = len(old)
    counts = np.bincount(labels, minlength=k)
    sums = np.zeros_like(old)
    np.add.at(sums, labels, x)
    new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], old)
    empty = np.flatnonzero(counts == 0)
    if len(empty) and len(x) >= k:
        # an empty cluster restarts at the points worst served now, so no code stays dead
        far = np.argsort(-dist[np.arange(len(x)), labels])[: len(empty)]
        new[empty] = x[far]
    return new


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

    def __init__(self, config: RQKMeansConfig | None = None, **options: Any) -> None:
        self.config = config or RQKMeansConfig(**options)

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
        threads: torch threads while training.
    """

    latent_dim: int = Field(32, ge=2)
    hidden_dim: int = Field(256, ge=2)
    epochs: int = Field(200, ge=1)
    batch_size: int = Field(256, ge=8)
    lr: float = Field(1e-3, gt=0)
    beta: float = Field(0.25, ge=0)
    reset_every: int = Field(10, ge=0)
    threads: int = Field(2, ge=1)


class RQVAE:
    """RQ-VAE tokeniser (torch). ``fit(vectors)`` returns :class:`SemanticIDs` whose codebooks
    live in the latent space; ``diagnostics.extra`` holds ``dead_code_resets``."""

    method = "rq-vae"

    def __init__(self, config: RQVAEConfig | None = None, **options: Any) -> None:
        self.config = config or RQVAEConfig(**options)

    def fit(self, vectors: np.ndarray, item_ids: np.ndarray | None = None) -> SemanticIDs:
        from llmrec.models._torch import torch_session

        cfg = self.config
        x = prepare_vectors(vectors, cfg.normalize)
        k = cfg.k_for(len(x))
        with torch_session(cfg.threads, cfg.seed) as torch:
            net = _build_rqvae(torch, x.shape[1], k, cfg)
            data = torch.as_tensor(x, dtype=torch.float32)
            resets = _train_rqvae(torch, net, data, cfg)
            with torch.no_grad():
                x_hat, codes, _ = net(data)
            codes_np = codes.numpy().astype(np.int64)
            books = [b.detach().numpy().copy() for b in net.codebooks]
            x_hat_np = x_hat.numpy().astype(np.float64)
        diag = diagnose(codes_np, k, x, x_hat_np, dead_code_resets=float(resets))
        return _finish(codes_np, books, diag, self.method, item_ids)


def _build_rqvae(torch: Any, dim: int, k: int, cfg: RQVAEConfig) -> Any:
    nn = torch.nn

    class _RQVAE(nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Sequential(
                nn.Linear(dim, cfg.hidden_dim), nn.SiLU(), nn.Linear(cfg.hidden_dim, cfg.latent_dim)
            )
            self.decoder = nn.Sequential(
                nn.Linear(cfg.latent_dim, cfg.hidden_dim), nn.SiLU(), nn.Linear(cfg.hidden_dim, dim)
            )
            self.codebooks = nn.ParameterList(
                [nn.Parameter(torch.randn(k, cfg.latent_dim) * 0.1) for _ in range(cfg.levels)]
            )
            self.initialised = False

        def quantize(self, z: Any) -> tuple[Any, Any, Any, list[Any]]:
            """(quantised z, codes (n, L), codebook+commitment loss, residual per level)."""
            residual, total, loss = z, torch.zeros_like(z), z.new_zeros(())
            codes, residuals = [], []
            for book in self.codebooks:
                residuals.append(residual)
                idx = torch.cdist(residual, book).argmin(dim=1)
                chosen = book[idx]
                loss = loss + ((residual.detach() - chosen) ** 2).mean()
                loss = loss + cfg.beta * ((residual - chosen.detach()) ** 2).mean()
                total = total + chosen
                residual = residual - chosen.detach()
                codes.append(idx)
            # straight-through: the decoder's gradient reaches the encoder unchanged
            quantised = z + (total - z).detach()
            return quantised, torch.stack(codes, dim=1), loss, residuals

        def forward(self, x: Any) -> tuple[Any, Any, Any]:
            quantised, codes, qloss, _ = self.quantize(self.encoder(x))
            return self.decoder(quantised), codes, qloss

    return _RQVAE()


def _init_codebooks(torch: Any, net: Any, data: Any, cfg: RQVAEConfig) -> None:
    """k-means on the first latents, level by level (the residual of each level feeds the
    next), so every code starts where items are."""
    rng = np.random.default_rng(cfg.seed)
    with torch.no_grad():
        residual = net.encoder(data).numpy().astype(np.float64)
        for book in net.codebooks:
            cent, labels = kmeans(residual, book.shape[0], iters=10, rng=rng)
            book.copy_(torch.as_tensor(cent))
            residual = residual - cent[labels]


def _train_rqvae(torch: Any, net: Any, data: Any, cfg: RQVAEConfig) -> int:
    """Train; returns how many dead codes were reset."""
    _init_codebooks(torch, net, data, cfg)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    n, resets = len(data), 0
    last_reset_epoch = int(cfg.epochs * 0.8)
    for epoch in progress.track(range(cfg.epochs), desc="rq-vae", unit="epoch"):
        used = [torch.zeros(b.shape[0], dtype=torch.bool) for b in net.codebooks]
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, cfg.batch_size):
            batch = data[perm[start : start + cfg.batch_size]]
            quantised, codes, qloss, residuals = net.quantize(net.encoder(batch))
            loss = ((net.decoder(quantised) - batch) ** 2).mean() + qloss
            opt.zero_grad()
            loss.backward()
            opt.step()
            for lvl, flags in enumerate(used):
                flags[codes[:, lvl]] = True
        if cfg.reset_every and (epoch + 1) % cfg.reset_every == 0 and epoch < last_reset_epoch:
            resets += _reset_dead(torch, net, residuals, used, gen)
    return resets


def _reset_dead(torch: Any, net: Any, residuals: list[Any], used: list[Any], gen: Any) -> int:
    """Move codes no item chose this epoch onto random residuals of the last batch."""
    count = 0
    with torch.no_grad():
        for book, res, flags in zip(net.codebooks, residuals, used, strict=True):
            dead = torch.nonzero(~flags).flatten()
            if len(dead):
                pick = torch.randint(0, len(res), (len(dead),), generator=gen)
                book[dead] = res.detach()[pick]
                count += len(dead)
    return count
