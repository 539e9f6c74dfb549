"""BPR-MF's network: user and item factors, scored by dot product, trained pairwise."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional


class BPRNet(nn.Module):
    """``user`` ``(n_users, dim)`` and ``item`` ``(n_items, dim)`` embeddings, drawn from
    ``N(0, init_std)`` (user first, then item)."""

    def __init__(self, n_users: int, n_items: int, dim: int, init_std: float) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        nn.init.normal_(self.user.weight, std=init_std)
        nn.init.normal_(self.item.weight, std=init_std)

    def loss(
        self, users: torch.Tensor, items: torch.Tensor, negatives: torch.Tensor, reg: float
    ) -> torch.Tensor:
        """Mean BPR loss of ``(b,)`` users over their ``(b,)`` positive items against
        ``(b, n_neg)`` negatives, plus ``reg`` times the batch's squared embedding norms per
        example (each negative weighted ``1 / n_neg``)."""
        u = self.user(users)
        p = self.item(items)
        n = self.item(negatives)  # (b, n_neg, dim)
        pos = (u * p).sum(-1, keepdim=True)
        negs = torch.einsum("bd,bnd->bn", u, n)
        loss = -functional.logsigmoid(pos - negs).mean()
        l2 = u.pow(2).sum() + p.pow(2).sum() + n.pow(2).sum() / negatives.shape[1]
        return loss + reg * l2 / len(users)
