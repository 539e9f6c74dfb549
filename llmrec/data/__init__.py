"""Datasets, loaders and splits."""

from llmrec.data.dataset import Dataset, UserHistory
from llmrec.data.splits import Split, leave_one_out, make_split, random_split, temporal

__all__ = [
    "Dataset",
    "Split",
    "UserHistory",
    "leave_one_out",
    "make_split",
    "random_split",
    "temporal",
]
