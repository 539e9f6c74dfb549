"""The RQ-VAE network and its training on their own."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from llmrec.nets.rqvae import RQVAENet, reset_dead, train_rqvae  # noqa: E402
from llmrec.paradigms.tokens.quantize import RQVAEConfig  # noqa: E402

CFG = RQVAEConfig(levels=2, latent_dim=4, hidden_dim=8, epochs=3, batch_size=16, reset_every=1)
DATA = torch.as_tensor(np.random.default_rng(0).standard_normal((40, 6)), dtype=torch.float32)


def trained(seed: int = 0) -> tuple[RQVAENet, int]:
    torch.manual_seed(seed)
    net = RQVAENet(6, 5, CFG)
    return net, train_rqvae(net, DATA, CFG)


def test_shapes_and_codes_in_range() -> None:
    torch.manual_seed(0)
    net = RQVAENet(6, 5, CFG)
    x_hat, codes, loss = net(DATA)
    assert x_hat.shape == (40, 6) and codes.shape == (40, 2) and loss.shape == ()
    assert codes.dtype == torch.int64 and int(codes.min()) >= 0 and int(codes.max()) < 5
    assert [tuple(b.shape) for b in net.codebooks] == [(5, 4), (5, 4)]


def test_quantised_latents_sum_the_chosen_codes() -> None:
    torch.manual_seed(0)
    net = RQVAENet(6, 5, CFG)
    with torch.no_grad():
        quantised, codes, _, residuals = net.quantize(net.encoder(DATA))
        books = list(net.codebooks)
        chosen = books[0][codes[:, 0]] + books[1][codes[:, 1]]
    torch.testing.assert_close(quantised, chosen)
    assert len(residuals) == 2


def test_training_is_deterministic_under_a_seed() -> None:
    (first, resets), (again, resets_again) = trained(), trained()
    assert resets == resets_again
    state, state_again = first.state_dict(), again.state_dict()
    assert all(torch.equal(state[k], state_again[k]) for k in state)


def test_dead_codes_move_onto_residuals() -> None:
    torch.manual_seed(0)
    net = RQVAENet(6, 5, CFG)
    residuals = [torch.ones(3, 4), torch.ones(3, 4)]
    used = [torch.tensor([True, False, True, True, True]), torch.ones(5, dtype=torch.bool)]
    assert reset_dead(net, residuals, used, torch.Generator().manual_seed(0)) == 1
    assert torch.equal(net.codebooks[0][1].detach(), torch.ones(4))
