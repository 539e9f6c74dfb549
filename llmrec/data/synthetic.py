"""A seeded generator of recommendation data with the structure real data has, at any scale.

What it builds, so that models (and LM encoders) have something to find:

* **Popularity**: item ``i`` has weight ``rank_i ** -popularity_exponent`` (a Zipf law over a
  random ranking of the catalogue), so a few items take most interactions.
* **Taste clusters**: each item belongs to one of ``n_clusters`` topics and each user to one
  cluster; a fraction ``taste`` of a user's interactions come from their cluster's items (still
  popularity-weighted), the rest from the whole catalogue.
* **Text**: an item's title draws on its topic's own words ("The Crimson Harbor") and its
  ``genres`` field names its topic's genre ("Western|Mystery"), so items of one cluster read
  alike. Users carry ``gender``, ``age_group`` and ``occupation``, drawn with cluster-dependent
  odds (so fairness probes have groups whose tastes differ).
* **Time**: each user starts at a random moment of 2020–2022 and their interactions follow at
  random gaps (about a day), strictly increasing; the order within a user is random.

Users have heavy-tailed activity (log-normal), at least one interaction each when
``n_interactions >= n_users``, and never the same item twice. Everything is vectorised, so ten
million interactions over a million items take seconds and about a gigabyte.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from llmrec.data._seed import generator
from llmrec.data.dataset import Dataset
from llmrec.errors import ConfigError

__all__ = ["synthetic"]

GENRE_WORDS = (
    "Action", "Adventure", "Animation", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
    "Family", "History", "Sport", "Biography", "Noir", "Satire", "Heist", "Space",
)  # fmt: skip
ADJECTIVES = (
    "Crimson", "Silent", "Golden", "Hidden", "Broken", "Electric", "Frozen", "Wild", "Last",
    "Lost", "Burning", "Secret", "Iron", "Midnight", "Scarlet", "Hollow", "Distant", "Bright",
    "Shattered", "Velvet", "Savage", "Gentle", "Eternal", "Restless", "Quiet", "Neon", "Ancient",
    "Wandering", "Fearless", "Lonely", "Stolen", "Sacred", "Bitter", "Sweet", "Dark", "Silver",
    "Cosmic", "Rusty", "Haunted", "Radiant", "Forgotten", "Northern", "Southern", "Crooked",
    "Painted", "Fallen", "Rising", "Endless",
)  # fmt: skip
NOUNS = (
    "Harbor", "Kingdom", "Detective", "Garden", "Frontier", "Machine", "Empire", "River",
    "Dancer", "Outlaw", "Galaxy", "Island", "Soldier", "Castle", "Orchestra", "Storm", "Witness",
    "Highway", "Mountain", "Spy", "Circus", "Desert", "Village", "Robot", "Ghost", "Planet",
    "Train", "Heart", "Mirror", "Lighthouse", "Jungle", "Carnival", "Prophet", "Stranger",
    "Dragon", "Forest", "Bandit", "Symphony", "Captain", "Empress", "Voyage", "Tower", "Canyon",
    "Pilot", "Hunter", "Saint", "Thief", "Comet",
)  # fmt: skip
GENDERS = ("F", "M", "X")
AGE_GROUPS = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
OCCUPATIONS = (
    "student", "engineer", "artist", "educator", "healthcare", "sales", "writer", "retired",
    "technician", "other",
)  # fmt: skip
START = 1_577_836_800  # 2020-01-01 UTC, seconds
START_SPAN = 3 * 365 * 86_400
MEAN_GAP = 86_400
WORDS_PER_TOPIC = 6


def synthetic(
    n_users: int,
    n_items: int,
    n_interactions: int,
    *,
    n_clusters: int = 20,
    popularity_exponent: float = 1.0,
    taste: float = 0.8,
    seed: int = 0,
    name: str | None = None,
) -> Dataset:
    """A seeded synthetic :class:`Dataset` (same arguments, same dataset, bit for bit).

    Args:
        n_users, n_items: sizes of the id spaces (ids are ``1..n``, indices ``0..n-1``).
        n_interactions: number of interactions; met exactly unless users would need more
            distinct items than their draws can find (tiny catalogues).
        n_clusters: taste clusters (topics).
        popularity_exponent: Zipf exponent of item popularity (0 = uniform).
        taste: fraction of each user's interactions drawn from their own cluster.
        seed: seeds every random draw.

    Returns:
        A dataset named ``synthetic:{n_users}x{n_items}x{n_interactions}`` with item text
        fields ``title``, ``genres``, ``year`` and user attributes ``gender``, ``age_group``,
        ``occupation``; timestamps in seconds, no ratings.
    """
    _check(n_users, n_items, n_interactions, n_clusters, popularity_exponent, taste)
    rng = generator(seed)
    item_cluster = rng.integers(0, n_clusters, n_items).astype(np.int32)
    user_cluster = rng.integers(0, n_clusters, n_users).astype(np.int32)
    counts = _activity(rng, n_users, n_items, n_interactions)
    sampler = _Sampler(rng, item_cluster, n_clusters, popularity_exponent)
    users, items = _draw_unique(rng, sampler, user_cluster, counts, n_items, taste)
    # Random order within each user: sort on (user, random 32 bits) packed in one int64.
    shuffle_key = (users.astype(np.int64) << 32) | rng.integers(0, 2**32, len(users))
    order = np.argsort(shuffle_key)
    users, items = users[order], items[order]
    timestamps = _timestamps(rng, users, n_users)
    return Dataset(
        user_ids=np.arange(1, n_users + 1, dtype=np.int64),
        item_ids=np.arange(1, n_items + 1, dtype=np.int64),
        users=users,
        items=items,
        timestamps=timestamps,
        item_text=_item_text(rng, item_cluster, n_clusters),
        user_attrs=_user_attrs(rng, user_cluster),
        name=name or f"synthetic:{n_users}x{n_items}x{n_interactions}",
    )


def _check(
    n_users: int,
    n_items: int,
    n_interactions: int,
    n_clusters: int,
    exponent: float,
    taste: float,
) -> None:
    if n_users < 1 or n_items < 1 or n_interactions < 1 or n_clusters < 1:
        raise ConfigError(
            "synthetic data needs n_users, n_items, n_interactions and n_clusters >= 1; got "
            f"{n_users}, {n_items}, {n_interactions}, {n_clusters}"
        )
    if n_users >= 2**31 or n_items >= 2**31 or n_interactions >= 2**31:
        raise ConfigError("synthetic data supports fewer than 2**31 users, items and interactions")
    if not (math.isfinite(exponent) and exponent >= 0) or not 0 <= taste <= 1:
        raise ConfigError(
            f"need a finite popularity_exponent >= 0 and 0 <= taste <= 1; got {exponent}, {taste}"
        )


def _activity(
    rng: np.random.Generator, n_users: int, n_items: int, n_interactions: int
) -> np.ndarray:
    """``(n_users,)`` int64 interactions per user: log-normal, >= 1 where possible, and at most
    half the catalogue (the excess goes to users with room, so the total is kept)."""
    w = rng.lognormal(0.0, 1.0, n_users)
    base = 1 if n_interactions >= n_users else 0
    counts = base + rng.multinomial(n_interactions - base * n_users, w / w.sum())
    cap = max(1, n_items // 2)
    for _ in range(8):
        excess = int(np.clip(counts - cap, 0, None).sum())
        counts = np.minimum(counts, cap)
        room = cap - counts
        if excess == 0 or room.sum() == 0:
            break
        counts += rng.multinomial(excess, room / room.sum())
    return np.minimum(counts, cap).astype(np.int64)


class _Sampler:
    """Power-law item draws, from the whole catalogue or from one cluster's items.

    Items are ranked by a random permutation; a draw picks a rank from the continuous power law
    ``x ** -a`` on ``[1, N + 1)`` by its closed-form inverse CDF and floors it, so a draw costs
    a few arithmetic operations and one look-up instead of a binary search (10x faster at ten
    million draws). Within a cluster, the cluster's items keep their global rank order and the
    same law runs over the cluster's size.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        item_cluster: np.ndarray,
        n_clusters: int,
        exponent: float,
    ) -> None:
        self.exponent = exponent
        self.by_rank = rng.permutation(len(item_cluster)).astype(np.int32)  # rank -> item
        in_cluster = np.argsort(item_cluster[self.by_rank], kind="stable")
        self.by_cluster = self.by_rank[in_cluster]  # items grouped by cluster, by rank within
        self.sizes = np.bincount(item_cluster, minlength=n_clusters).astype(np.int64)
        self.start = np.cumsum(self.sizes) - self.sizes

    def positions(self, rng: np.random.Generator, sizes: np.ndarray | int, n: int) -> np.ndarray:
        """``(n,)`` int64 0-based ranks below ``sizes``, power-law distributed."""
        u = rng.random(n)
        top = np.asarray(sizes, dtype=np.float64) + 1.0
        b = 1.0 - self.exponent
        # exponent 1 is the limit b -> 0 of the general form
        x = top**u if abs(b) < 1e-9 else (1.0 + u * (top**b - 1.0)) ** (1.0 / b)
        return np.clip(np.floor(x).astype(np.int64) - 1, 0, np.asarray(sizes) - 1)

    def draw_global(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.by_rank[self.positions(rng, len(self.by_rank), n)]

    def draw_in(
        self, rng: np.random.Generator, clusters: np.ndarray, *, uniform: bool = False
    ) -> np.ndarray:
        """One item per entry of ``clusters`` (each cluster must be non-empty)."""
        sizes = self.sizes[clusters]
        if uniform:
            pos = (rng.random(len(clusters)) * sizes).astype(np.int64)
        else:
            pos = self.positions(rng, sizes, len(clusters))
        return self.by_cluster[self.start[clusters] + pos]


def _draw_unique(
    rng: np.random.Generator,
    sampler: _Sampler,
    user_cluster: np.ndarray,
    counts: np.ndarray,
    n_items: int,
    taste: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``counts[u]`` distinct items per user.

    Repeats are re-drawn: first by popularity, then (for the few users whose deficit
    persists, e.g. heavy users of a small cluster) uniformly within the cluster, and at last
    uniformly over the catalogue, which always finds new items.
    Keys ``user * n_items + item`` stay sorted; sort-based de-duplication is used because
    ``np.unique`` (hash-based in numpy 2.4) is much slower on ten million int64 keys
    (docs/benchmarks.md).
    """
    n_users = len(counts)
    keys = np.empty(0, dtype=np.int64)
    wanted = counts
    for round_ in range(40):
        users = np.repeat(np.arange(n_users, dtype=np.int64), wanted)
        if len(users) == 0:
            break
        if round_ < 6:
            items = _draw(rng, sampler, user_cluster[users], taste)
        elif round_ < 20:
            items = _draw(rng, sampler, user_cluster[users], taste, uniform=True)
        else:  # the user has exhausted their cluster: any item
            items = rng.integers(0, n_items, len(users))
        keys = _merge_unique(keys, users * n_items + items)
        wanted = counts - np.bincount(keys // n_items, minlength=n_users)
    return (keys // n_items).astype(np.int32), (keys % n_items).astype(np.int32)


def _merge_unique(sorted_keys: np.ndarray, new: np.ndarray) -> np.ndarray:
    """Sorted union of a sorted unique array and new keys (which may repeat)."""
    new = _sorted_unique(new)
    if len(sorted_keys):
        pos = np.minimum(np.searchsorted(sorted_keys, new), len(sorted_keys) - 1)
        new = new[sorted_keys[pos] != new]
    # Stable sort of two sorted runs is a linear merge (timsort).
    return np.sort(np.concatenate([sorted_keys, new]), kind="stable")


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    out = np.sort(values)
    keep = np.ones(len(out), dtype=bool)
    np.not_equal(out[1:], out[:-1], out=keep[1:])
    return out[keep]


def _draw(
    rng: np.random.Generator,
    sampler: _Sampler,
    clusters: np.ndarray,
    taste: float,
    *,
    uniform: bool = False,
) -> np.ndarray:
    """One item per entry of ``clusters`` (the drawing user's cluster): from that cluster with
    probability ``taste``, else from the catalogue; by popularity, or uniformly if asked."""
    n = len(clusters)
    if uniform:
        items = rng.integers(0, len(sampler.by_rank), n)
    else:
        items = sampler.draw_global(rng, n).astype(np.int64)
    own = (rng.random(n) < taste) & (sampler.sizes[clusters] > 0)
    items[own] = sampler.draw_in(rng, clusters[own], uniform=uniform)
    return items


def _timestamps(rng: np.random.Generator, users: np.ndarray, n_users: int) -> np.ndarray:
    """Strictly increasing seconds within each user; ``users`` must be grouped by user."""
    start = START + rng.integers(0, START_SPAN, n_users)
    gaps = 1 + rng.exponential(MEAN_GAP, len(users)).astype(np.int64)
    total = np.cumsum(gaps)
    counts = np.bincount(users, minlength=n_users)
    first = np.cumsum(counts) - counts  # position of each user's first interaction
    offset = np.repeat(total[first[counts > 0]] - gaps[first[counts > 0]], counts[counts > 0])
    return start[users] + total - offset


def _item_text(rng: np.random.Generator, item_cluster: np.ndarray, n_clusters: int) -> pd.DataFrame:
    """Titles from each topic's own words, genres naming the topic, and a year."""
    n = len(item_cluster)
    topic_adj = rng.integers(0, len(ADJECTIVES), (n_clusters, WORDS_PER_TOPIC))
    topic_noun = rng.integers(0, len(NOUNS), (n_clusters, WORDS_PER_TOPIC))
    own = rng.random(n) < 0.8  # most title words come from the item's topic
    pick = rng.integers(0, WORDS_PER_TOPIC, (2, n))
    adj = np.where(own, topic_adj[item_cluster, pick[0]], rng.integers(0, len(ADJECTIVES), n))
    noun = np.where(own, topic_noun[item_cluster, pick[1]], rng.integers(0, len(NOUNS), n))
    words_a = np.asarray(ADJECTIVES, dtype=object)
    words_n = np.asarray(NOUNS, dtype=object)
    titles = "The " + words_a[adj] + " " + words_n[noun]
    primary = np.asarray(GENRE_WORDS, dtype=object)[np.arange(n_clusters) % len(GENRE_WORDS)]
    second_idx = rng.integers(0, len(GENRE_WORDS), n)
    second = np.asarray(GENRE_WORDS, dtype=object)[second_idx]
    has_second = (rng.random(n) < 0.5) & (second != primary[item_cluster])
    genres = np.where(has_second, primary[item_cluster] + "|" + second, primary[item_cluster])
    years = (1950 + rng.integers(0, 75, n)).astype(str).astype(object)
    return pd.DataFrame({"title": titles, "genres": genres, "year": years})


def _user_attrs(rng: np.random.Generator, user_cluster: np.ndarray) -> pd.DataFrame:
    """Categorical attributes whose odds depend on the user's cluster."""
    n = len(user_cluster)
    f_share = np.where(user_cluster % 2 == 0, 0.65, 0.35)
    draw = rng.random(n)
    gender = np.where(draw < f_share, 0, np.where(draw < 0.97, 1, 2))
    age = np.clip(rng.normal(2.0 + (user_cluster % 3), 1.2).round(), 0, len(AGE_GROUPS) - 1)
    occupation = (user_cluster + rng.integers(0, 3, n)) % len(OCCUPATIONS)
    return pd.DataFrame(
        {
            "gender": np.asarray(GENDERS, dtype=object)[gender],
            "age_group": np.asarray(AGE_GROUPS, dtype=object)[age.astype(np.int64)],
            "occupation": np.asarray(OCCUPATIONS, dtype=object)[occupation],
        }
    )
