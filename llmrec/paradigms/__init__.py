"""The three ways of putting a language model into a recommender."""
