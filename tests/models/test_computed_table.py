"""Computed item tables are kept while scoring and rebuilt whenever they could have changed."""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")

from llmrec.nets.table import ComputedTable  # noqa: E402


class Doubled(ComputedTable):
    def __init__(self) -> None:
        super().__init__()
        self.base = torch.nn.Parameter(torch.ones(3, 2))
        self.calls = 0

    def compute_weight(self) -> Any:
        self.calls += 1
        return self.base * 2


def test_the_table_is_computed_once_while_scoring() -> None:
    table = Doubled().eval()
    with torch.inference_mode():
        first = table.weight
        assert table(torch.tensor([0, 2])).shape == (2, 2)
    assert table.calls == 1
    assert torch.equal(first, torch.full((3, 2), 2.0))


def test_training_and_gradients_always_recompute() -> None:
    table = Doubled()
    _ = table.weight, table.weight  # train mode
    assert table.calls == 2
    table.eval()
    _ = table.weight, table.weight  # eval mode but gradients on: not kept (autograd needs it fresh)
    assert table.calls == 4


def test_mode_changes_and_loaded_weights_drop_the_kept_table() -> None:
    table = Doubled().eval()
    with torch.no_grad():
        _ = table.weight
        table.train().eval()
        _ = table.weight
        assert table.calls == 2
        table.load_state_dict({"base": torch.full((3, 2), 5.0)})
        assert torch.equal(table.weight, torch.full((3, 2), 10.0))
    assert table.calls == 3
