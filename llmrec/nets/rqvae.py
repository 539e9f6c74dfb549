"""The RQ-VAE tokeniser's network and training: an MLP autoencoder whose latent is quantised
residually by ``levels`` codebooks (straight-through gradients), with codebooks initialised by
k-means on the first latents and dead codes reset to live residuals, the two usual guards
against codebook collapse."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import nn

from llmrec import progress
from llmrec.paradigms.tokens.kmeans import kmeans


class RQVAESettings(Protocol):
    """What the network and its training read (:class:`~llmrec.paradigms.tokens.quantize.
    RQVAEConfig`)."""

    levels: int
    latent_dim: int
    hidden_dim: int
    beta: float
    epochs: int
    batch_size: int
    lr: float
    reset_every: int
    seed: int


class RQVAENet(nn.Module):
    """Vectors ``(n, dim)`` → reconstruction ``(n, dim)``, codes ``(n, levels)`` int64 and the
    codebook + commitment loss. ``codebooks`` holds ``levels`` parameters ``(k, latent_dim)``.
    """

    def __init__(self, dim: int, k: int, cfg: RQVAESettings) -> None:
        super().__init__()
        self.beta = cfg.beta
        self.encoder = nn.Sequential(
            nn.Linear(dim, cfg.hidden_dim), nn.SiLU(), nn.Linear(cfg.hidden_dim, cfg.latent_dim)
        )
        self.decoder = nn.Sequential(
            nn.Linear(cfg.latent_dim, cfg.hidden_dim), nn.SiLU(), nn.Linear(cfg.hidden_dim, dim)
        )
        self.codebooks = nn.ParameterList(
            [nn.Parameter(torch.randn(k, cfg.latent_dim) * 0.1) for _ in range(cfg.levels)]
        )

    def quantize(
        self, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(quantised z, codes (n, L), codebook+commitment loss, residual per level)."""
        residual, total, loss = z, torch.zeros_like(z), z.new_zeros(())
        codes, residuals = [], []
        for book in self.codebooks:
            residuals.append(residual)
            idx = torch.cdist(residual, book).argmin(dim=1)
            chosen = book[idx]
            loss = loss + ((residual.detach() - chosen) ** 2).mean()
            loss = loss + self.beta * ((residual - chosen.detach()) ** 2).mean()
            total = total + chosen
            residual = residual - chosen.detach()
            codes.append(idx)
        # straight-through: the decoder's gradient reaches the encoder unchanged
        quantised = z + (total - z).detach()
        return quantised, torch.stack(codes, dim=1), loss, residuals

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quantised, codes, qloss, _ = self.quantize(self.encoder(x))
        return self.decoder(quantised), codes, qloss


def init_codebooks(net: RQVAENet, data: torch.Tensor, seed: int) -> None:
    """k-means on the first latents, level by level (the residual of each level feeds the
    next), so every code starts where items are."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        residual = net.encoder(data).cpu().numpy().astype(np.float64)
        for book in net.codebooks:
            cent, labels = kmeans(residual, book.shape[0], iters=10, rng=rng)
            book.copy_(torch.as_tensor(cent))
            residual = residual - cent[labels]


def train_rqvae(net: RQVAENet, data: torch.Tensor, cfg: RQVAESettings) -> int:
    """Train on ``(n, dim)`` float32 ``data``; returns how many dead codes were reset.

    Codes no item chose in an epoch restart at random residuals of its last batch every
    ``reset_every`` epochs, but not in the last fifth of training.
    """
    init_codebooks(net, data, cfg.seed)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    n, resets = len(data), 0
    last_reset_epoch = int(cfg.epochs * 0.8)
    for epoch in progress.track(range(cfg.epochs), desc="rq-vae", unit="epoch"):
        used = [
            torch.zeros(b.shape[0], dtype=torch.bool, device=data.device) for b in net.codebooks
        ]
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
            resets += reset_dead(net, residuals, used, gen)
    return resets


def reset_dead(
    net: RQVAENet, residuals: list[torch.Tensor], used: list[torch.Tensor], gen: torch.Generator
) -> int:
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
