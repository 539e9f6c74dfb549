"""The computed item tables of LM-SASRec and token-SASRec, and BPR's network, on their own."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from llmrec.nets.bpr import BPRNet  # noqa: E402
from llmrec.nets.text_table import LMSASRecNet, TextItemTable  # noqa: E402
from llmrec.nets.token_table import TokenEmbedding  # noqa: E402
from llmrec.paradigms.embeddings.lm_sasrec import LMSASRecConfig  # noqa: E402

TEXT = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
HAS_ID = np.array([True, False, True, True, False])


def text_config(**overrides: object) -> LMSASRecConfig:
    base = {"encoder": "fake:4", "max_len": 4, "dim": 8, "n_heads": 2, "inner_dim": 16}
    return LMSASRecConfig(**{**base, **overrides})


def test_the_text_table_pads_row_zero_and_gives_ids_only_to_known_items() -> None:
    torch.manual_seed(0)
    table = TextItemTable(5, text_config(), TEXT, HAS_ID).eval()
    assert table.weight.shape == (6, 8)
    assert torch.count_nonzero(table.weight[0]) == 0
    assert table.ids is not None
    without_ids = table.adaptor(table.text) * table.real
    moved = (table.weight - without_ids).abs().sum(dim=1)
    assert (moved[1:] > 0).tolist() == HAS_ID.tolist()


def test_text_only_has_no_id_embedding() -> None:
    table = TextItemTable(5, text_config(item_repr="text"), TEXT, HAS_ID)
    assert table.ids is None and "ids.weight" not in table.state_dict()


def test_the_lm_network_reads_items_through_the_text_table() -> None:
    torch.manual_seed(0)
    net = LMSASRecNet(5, text_config(), TEXT, HAS_ID).eval()
    assert isinstance(net.item_emb, TextItemTable)
    assert net(torch.tensor([[0, 1, 2, 5]])).shape == (1, 4, 8)
    assert {"item_emb.text", "item_emb.id_mask"} <= set(net.state_dict())


def test_token_rows_are_sums_of_their_code_embeddings() -> None:
    codes = np.array([[0, 1], [0, 1], [2, 0]])
    table = TokenEmbedding(codes, [3, 2], dim=4, id_embedding=False, tag_index=None).eval()
    weight = table.weight.detach()
    assert weight.shape == (4, 4) and torch.count_nonzero(weight[0]) == 0
    assert torch.equal(weight[1], weight[2])  # same codes, no ID embedding: same vector
    code = table.code_emb.weight.detach()
    torch.testing.assert_close(weight[3], code[2] + code[3 + 0])


def test_tags_and_ids_make_items_with_shared_codes_differ() -> None:
    codes = np.array([[0, 1], [0, 1]])
    tags = np.array([[0, -1], [1, 0]])
    table = TokenEmbedding(codes, [1, 2], dim=4, id_embedding=True, tag_index=tags)
    assert table.id_emb is not None and table.tag_emb is not None
    weight = table.weight.detach()
    assert not torch.equal(weight[1], weight[2])


def test_bpr_loss_is_finite_and_the_seed_decides_the_factors() -> None:
    torch.manual_seed(0)
    net = BPRNet(n_users=4, n_items=6, dim=3, init_std=0.1)
    loss = net.loss(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([[0, 1], [4, 5]]), 0.1)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert net.user.weight.grad is not None
    torch.manual_seed(0)
    again = BPRNet(n_users=4, n_items=6, dim=3, init_std=0.1)
    assert torch.equal(net.item.weight, again.item.weight)
