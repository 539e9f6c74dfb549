"""Conventional recommenders: baselines, and the retrievers and consumers paradigms plug into."""

from llmrec.models.base import ModelConfig, Recommendations, Recommender
from llmrec.models.registry import MODELS, create_model, get_model_class, load_model

__all__ = [
    "MODELS",
    "ModelConfig",
    "Recommendations",
    "Recommender",
    "create_model",
    "get_model_class",
    "load_model",
]
