"""The Dataset core and the splits."""

import numpy as np
import pytest

from llmrec.data.dataset import Dataset
from llmrec.data.splits import leave_one_out, make_split, random_split, temporal
from llmrec.errors import ConfigError, DataError, UnknownIdError
from llmrec.testing import tiny_dataset


def small():
    return Dataset(
        user_ids=np.array(["a", "b"], dtype=object),
        item_ids=np.array([10, 20, 30, 40]),
        users=[0, 0, 0, 0, 1, 1],
        items=[0, 1, 2, 3, 3, 2],
        timestamps=[4, 1, 3, 2, 5, 5],
    )


def test_history_is_time_ordered_and_ties_keep_input_order():
    hist = small().history()
    assert hist.of(0).tolist() == [1, 3, 2, 0]
    assert hist.of(1).tolist() == [3, 2]
    assert hist.last(np.array([0, 1]), 3).tolist() == [[3, 2, 0], [-1, 3, 2]]
    recent = hist.recent(3)
    assert [recent.of(u).tolist() for u in (0, 1)] == [[3, 2, 0], [3, 2]]
    assert recent.timestamps.tolist() == [2, 3, 4, 5, 5]


def test_id_lookup_and_unknown_ids():
    data = small()
    assert data.item_index([30, 10]).tolist() == [2, 0]
    with pytest.raises(UnknownIdError, match="unknown user id"):
        data.user_index(["a", "zz"])


def test_interaction_outside_tables_is_rejected():
    with pytest.raises(DataError, match="item index outside"):
        Dataset(np.array([1]), np.array([1]), [0], [3], [0])


def test_leave_one_out_takes_latest_two():
    split = leave_one_out(small())
    assert split.test.history().of(0).tolist() == [0]
    assert split.valid.history().of(0).tolist() == [2]
    assert split.train.history().of(0).tolist() == [1, 3]
    # user b has two interactions only: everything stays in training
    assert split.train.history().of(1).tolist() == [3, 2]
    assert len(split.test) == 1


def test_loo_on_tiny_data_partitions_interactions():
    data = tiny_dataset()
    split = leave_one_out(data)
    assert len(split.train) + len(split.valid) + len(split.test) == len(data)
    assert len(split.test) == data.n_users and len(split.valid) == data.n_users


def test_temporal_split_respects_time():
    data = tiny_dataset()
    split = temporal(data, valid_frac=0.1, test_frac=0.2)
    assert split.train.timestamps.max() <= split.valid.timestamps.min()
    assert split.valid.timestamps.max() <= split.test.timestamps.min()
    assert len(split.test) == round(0.2 * len(data))


def test_random_split_is_seeded():
    data = tiny_dataset()
    a = random_split(data, seed=3)
    b = random_split(data, seed=3)
    c = random_split(data, seed=4)
    np.testing.assert_array_equal(a.test.items, b.test.items)
    assert not np.array_equal(a.test.users, c.test.users)


def test_bad_split_config_is_a_clear_error():
    with pytest.raises(ConfigError, match="fractions"):
        make_split(tiny_dataset(), "random", valid_frac=0.6, test_frac=0.6)
    with pytest.raises(ConfigError, match="unknown split"):
        make_split(tiny_dataset(), "weird")


def test_item_texts_from_template_and_unknown_field():
    data = tiny_dataset()
    texts = data.item_texts("{title} / {genres}")
    assert texts[0] == "Movie 0 / Drama"
    with pytest.raises(DataError, match="nope"):
        data.item_texts("{nope}")


def _per_user(counts: list[int]) -> Dataset:
    """User ``u`` has ``counts[u]`` interactions with distinct items, in time order."""
    users = np.repeat(np.arange(len(counts)), counts)
    items = np.concatenate([np.arange(c) for c in counts])
    return Dataset(
        user_ids=np.arange(len(counts)),
        item_ids=np.arange(max(counts)),
        users=users,
        items=items,
        timestamps=np.arange(len(users)),
        name="short",
    )


def test_leave_one_out_without_an_evaluable_user_says_what_a_user_needs():
    with pytest.raises(DataError) as exc:
        leave_one_out(_per_user([1, 2, 2, 1]))
    message = str(exc.value)
    assert message.startswith("leave-one-out split: no user has the 3 interactions it needs")
    assert (
        "(min_history=3" in message and "the most any of the 4 users of 'short' has is 2" in message
    )
    with pytest.raises(DataError, match="no user has the 5 interactions it needs"):
        make_split(_per_user([4, 4]), "loo", min_history=5)
    assert len(leave_one_out(_per_user([1, 3])).test) == 1  # one evaluable user is enough


@pytest.mark.parametrize(
    ("kind", "fracs", "part"),
    [
        ("temporal", {"valid_frac": 0.1, "test_frac": 0.05}, "test"),  # round(8 * 0.05) == 0
        ("temporal", {"valid_frac": 0.05, "test_frac": 0.2}, "validation"),
        ("random", {"valid_frac": 0.1, "test_frac": 0.01}, "test"),
        ("random", {"valid_frac": 0.01, "test_frac": 0.3}, "validation"),
        ("random", {"valid_frac": 0.45, "test_frac": 0.5}, "training"),
    ],
)
def test_a_split_with_an_empty_part_is_refused(kind, fracs, part):
    with pytest.raises(DataError) as exc:
        make_split(_per_user([4, 4]), kind, seed=0, **fracs)
    message = str(exc.value)
    assert message.startswith(f"{kind} split: no interaction falls into {part} (8 interactions")


def test_no_validation_is_allowed_when_none_is_asked_for():
    split = temporal(tiny_dataset(), valid_frac=0.0, test_frac=0.2)
    assert len(split.valid) == 0 and len(split.test) > 0


def test_a_negative_seed_is_a_config_error_not_a_numpy_traceback():
    with pytest.raises(ConfigError, match="seed must be 0 or more, got -1"):
        random_split(tiny_dataset(), seed=-1)
