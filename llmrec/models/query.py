"""Per-query user profiles: data passed to ``recommend``/``score_candidates``/``rank``.

A query can describe its users instead of relying on the profiles a model stored at fit time:
a service answers rows of a query-time history (users the model may never have seen), and the
fairness probe asks how a ranking changes when only the profile changes. Both pass the
profiles as an argument, so two queries running at once on one model never see each other's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["ProfileSpec", "QueryProfiles", "same_profile"]

#: One user's profile in a query: attributes (``{}``: no profile), or the index of a user the
#: model knows, whose stored profile applies (an unknown index: no profile).
ProfileSpec = Mapping[str, str] | int

#: ``profiles[u]`` describes user index ``u`` of the query (every queried user must be there).
QueryProfiles = Mapping[int, ProfileSpec] | Sequence[ProfileSpec]


def same_profile(users: Sequence[int], profile: Mapping[str, str]) -> dict[int, ProfileSpec]:
    """Profiles that describe every one of ``users`` by the same ``profile``."""
    return {int(u): profile for u in users}
