"""k-core filtering and item-ordered ties (the preprocessing of LlamaRec's protocol)."""

import numpy as np
import pandas as pd
import pytest

from llmrec.data.dataset import Dataset
from llmrec.data.filters import k_core, ties_by_item
from llmrec.data.splits import leave_one_out
from llmrec.errors import ConfigError, DataError
from llmrec.testing import tiny_dataset


def chain() -> Dataset:
    """Item z has one interaction: it goes, then user c (left with one), then item w (left
    with one), then user d: each pass of the filter uncovers the next."""
    rows = [("a", "x"), ("a", "y"), ("b", "x"), ("b", "y"), ("c", "z"), ("c", "w")]
    rows += [("d", "w"), ("d", "x")]
    users = sorted({u for u, _ in rows})
    items = sorted({i for _, i in rows})
    return Dataset(
        user_ids=np.array(users, dtype=object),
        item_ids=np.array(items, dtype=object),
        users=[users.index(u) for u, _ in rows],
        items=[items.index(i) for _, i in rows],
        timestamps=np.arange(len(rows)),
        item_text=pd.DataFrame({"title": [f"film {i}" for i in items]}),
    )


def test_k_core_repeats_until_every_user_and_item_has_enough():
    data = chain()
    core = k_core(data, min_user=2, min_item=2)
    counts_u = np.bincount(core.users, minlength=core.n_users)
    counts_i = np.bincount(core.items, minlength=core.n_items)
    assert counts_u.min() >= 2 and counts_i.min() >= 2
    # what survives is exactly the pairs whose user and item both survive, ids and text along
    pairs = {
        (core.user_ids[u], core.item_ids[i]) for u, i in zip(core.users, core.items, strict=True)
    }
    assert pairs == {("a", "x"), ("a", "y"), ("b", "x"), ("b", "y")}
    assert core.item_text["title"].tolist() == [f"film {i}" for i in core.item_ids]


def test_k_core_of_one_keeps_everything_used():
    data = tiny_dataset()
    core = k_core(data, min_user=1, min_item=1)
    assert len(core) == len(data)


def test_k_core_refuses_bad_thresholds_and_empty_results():
    with pytest.raises(ConfigError, match="1 or more"):
        k_core(chain(), min_user=0)
    with pytest.raises(DataError, match="leaves no interaction"):
        k_core(chain(), min_user=50)


def test_ties_by_item_orders_same_time_interactions_by_item_id():
    data = Dataset(
        user_ids=np.array(["u"], dtype=object),
        item_ids=np.array([30, 10, 20]),
        users=[0, 0, 0, 0],
        items=[0, 2, 1, 0],
        timestamps=[5, 5, 5, 1],
    )
    assert leave_one_out(data).test.item_ids[leave_one_out(data).test.items].tolist() == [10]
    ordered = ties_by_item(data)
    # time first, then item id: 30 (t=1), 10, 20, 30 (t=5)
    assert ordered.item_ids[ordered.history().of(0)].tolist() == [30, 10, 20, 30]
    assert ordered.item_ids[leave_one_out(ordered).test.items].tolist() == [30]


def test_run_configs_name_the_filter_the_tie_order_and_the_mask(tmp_path):
    """``llmrec run``'s split and eval options reach the filter, the split and the mask: a
    window of one known item leaves the others rankable, which popularity then recommends."""
    from llmrec.experiment import RunConfig, run_experiment

    def ndcg(split: dict, ev: dict, name: str) -> float:
        config = RunConfig.model_validate(
            {"dataset": "synthetic:60x40x900", "split": split, "eval": ev, "save_model": False}
        )
        return run_experiment(config, run_dir=tmp_path / name).metrics["ndcg@10"]

    strict = ndcg({}, {}, "strict")
    assert ndcg({"core": 1, "ties": "input"}, {"mask": "known"}, "same") == strict
    assert ndcg({}, {"mask": "window", "mask_window": 1}, "window") < strict
    with pytest.raises(DataError, match="leaves no interaction"):
        ndcg({"core": 1000}, {}, "empty")
