"""llmrec: language models in recommender systems — embeddings, tokens and direct ranking,
built on one data layer and one evaluation protocol, measured side by side."""

from llmrec.data import Dataset, Split, leave_one_out, make_split
from llmrec.errors import (
    BackendError,
    ConfigError,
    DataError,
    LlmrecError,
    NotFittedError,
    UnknownIdError,
)
from llmrec.models.base import ModelConfig, Recommendations, Recommender
from llmrec.models.registry import create_model, get_model_class
from llmrec.runtime import RuntimeOptions

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "ConfigError",
    "DataError",
    "Dataset",
    "LlmrecError",
    "ModelConfig",
    "NotFittedError",
    "Recommendations",
    "Recommender",
    "RuntimeOptions",
    "Split",
    "UnknownIdError",
    "__version__",
    "create_model",
    "get_model_class",
    "leave_one_out",
    "make_split",
]
