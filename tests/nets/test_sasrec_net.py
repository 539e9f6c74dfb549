"""SASRecNet on its own: shapes, causality, padding, last-only scoring and seeded determinism."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from llmrec.models.sasrec import SASRecConfig  # noqa: E402
from llmrec.nets.sasrec import SASRecNet  # noqa: E402

CFG = SASRecConfig(max_len=6, dim=8, n_heads=2, inner_dim=16, n_layers=2)


def make(seed: int = 0) -> SASRecNet:
    torch.manual_seed(seed)
    return SASRecNet(n_items=10, cfg=CFG).eval()


def test_shapes() -> None:
    net = make()
    tokens = torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]])
    assert net(tokens).shape == (2, 6, 8)
    assert net(tokens, last_only=True).shape == (2, 1, 8)
    assert net.item_emb.weight.shape == (11, 8)


def test_a_position_reads_no_later_item() -> None:
    net = make()
    a = torch.tensor([[0, 1, 2, 3, 4, 5]])
    b = torch.tensor([[0, 1, 2, 3, 9, 7]])
    with torch.no_grad():
        ha, hb = net(a), net(b)
    # position 0 is padding: its query reads nothing real and is never used
    torch.testing.assert_close(ha[:, 1:4], hb[:, 1:4])
    assert not torch.allclose(ha[:, 4:], hb[:, 4:])


def test_padding_keys_are_not_read() -> None:
    # the same items behind more padding: only the learned positions differ, so swap those out
    net = make()
    with torch.no_grad():
        net.pos_emb.weight.zero_()
        short = net(torch.tensor([[0, 0, 0, 0, 2, 3]]))
        long = net(torch.tensor([[0, 0, 0, 2, 3, 0]]))
    torch.testing.assert_close(short[0, 4:], long[0, 3:5])


def test_last_only_matches_the_last_position() -> None:
    net = make()
    tokens = torch.tensor([[0, 0, 3, 4, 5, 6], [0, 1, 2, 8, 9, 10]])
    with torch.no_grad():
        torch.testing.assert_close(net(tokens, last_only=True)[:, 0], net(tokens)[:, -1])


def test_the_seed_decides_the_weights() -> None:
    first, again, other = make(3).state_dict(), make(3).state_dict(), make(4).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["item_emb.weight"], other["item_emb.weight"])
