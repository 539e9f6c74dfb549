"""TigerNet on its own: shapes, causality, and a key/value cache that reproduces a full pass."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from llmrec.nets.tiger import PAD, TigerNet  # noqa: E402
from llmrec.paradigms.tokens.generative import GenerativeConfig  # noqa: E402

CFG = GenerativeConfig(dim=16, heads=2, layers=2, dropout=0.0)


def make(seed: int = 0) -> TigerNet:
    torch.manual_seed(seed)
    return TigerNet(vocab=12, max_len=8, cfg=CFG).eval()


def test_shapes() -> None:
    net = make()
    tokens = torch.tensor([[PAD, 1, 3, 5], [1, 2, 4, 6]])
    hidden, cache = net(tokens, tokens != PAD)
    assert hidden.shape == (2, 4, 16) and cache is None
    assert net.head(hidden).shape == (2, 4, 12)


def test_a_position_reads_no_later_token() -> None:
    net = make()
    a, b = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[1, 2, 9, 10]])
    with torch.no_grad():
        ha, _ = net(a, a != PAD)
        hb, _ = net(b, b != PAD)
    assert torch.equal(ha[:, :2], hb[:, :2])
    assert not torch.allclose(ha[:, 2:], hb[:, 2:])


def test_a_cached_step_equals_a_full_pass() -> None:
    net = make()
    ctx = torch.tensor([[PAD, PAD, 1, 3], [PAD, 1, 2, 5]])
    new = torch.tensor([[7], [8]])
    with torch.no_grad():
        _, cache = net(ctx, ctx != PAD, use_cache=True)
        assert cache is not None
        stepped = net.step(new, (ctx != PAD).sum(dim=1), cache)
        full = torch.cat([ctx, new], dim=1)
        whole, _ = net(full, full != PAD)
    torch.testing.assert_close(stepped[:, 0], whole[:, -1])
    assert cache.valid.shape == (2, 5) and cache.layers[0][0].shape[2] == 5


def test_selecting_beams_reorders_the_cache() -> None:
    net = make()
    ctx = torch.tensor([[PAD, 1, 3], [1, 2, 5]])
    with torch.no_grad():
        _, cache = net(ctx, ctx != PAD, use_cache=True)
    assert cache is not None
    keys = cache.layers[0][0]
    cache.select(torch.tensor([1, 1, 0]), width=3)
    assert cache.width == 3 and torch.equal(cache.layers[0][0][2], keys[0])


def test_the_seed_decides_the_weights() -> None:
    first, again, other = make(1).state_dict(), make(1).state_dict(), make(2).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["tok.weight"], other["tok.weight"])
