"""Film facts from Wikidata (CC0) joined onto a dataset whose items are films.

The film table is ``bokeh_sampledata/_data/movies.db`` from the ``bokeh-sampledata==2026.1``
wheel on PyPI: a SQLite file whose table ``omdb`` holds 17,472 films released 1940-2014, taken
from Wikidata, with director, writer, cast, genre, language, country and Academy Award
nominations. It is fetched like the MovieLens files (:mod:`llmrec.data._fetch`: the wheel is
downloaded and read as a zip, never installed), cached as ``wikidata-films/movies.db`` and read
with the standard library's ``sqlite3``.

Items are matched to films by title and year. MovieLens writes ``"Bug's Life, A"``,
``"Postino, Il (The Postman)"`` or ``"Professional, The (a.k.a. Leon: The Professional)"``
where Wikidata writes ``"A Bug's Life"``, ``"Il Postino: The Postman"`` and ``"Léon: The
Professional"``, so both sides are reduced to keys first (:func:`title_keys`) and matched in
tiers, each offered only the items still unmatched and the films no earlier tier took
(:data:`TIERS`).

Example::

    data = enrich_with_films(load_dataset("ml-1m"), read_films(fetch_films()))
    data.item_texts("{title} ({year}), directed by {director}. Cast: {cast}")
"""

from __future__ import annotations

import difflib
import re
import sqlite3
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from llmrec.data import _fetch
from llmrec.data._fetch import Archive, CacheSpec, Log, quiet
from llmrec.data.dataset import Dataset
from llmrec.errors import DataError

__all__ = [
    "FIELDS",
    "FILMS",
    "TIERS",
    "FilmMatch",
    "enrich_with_films",
    "fetch_films",
    "film_coverage",
    "match_films",
    "read_films",
    "title_keys",
]

REQUIREMENT = "bokeh-sampledata==2026.1"
DB_FILE = "movies.db"
TABLE = "omdb"
#: the item text field each film column becomes
FIELDS = {
    "director": "Director",
    "writer": "Writer",
    "cast": "Cast",
    "film_genres": "Genre",
    "language": "Language",
    "country": "Country",
    "awards": "Awards",
}
#: the match tiers, in the order they are tried
TIERS = ("exact", "year±1", "spelling", "subtitle")
#: how alike two keys must be (difflib's ratio) for the "spelling" tier
SPELLING_RATIO = 0.92
#: keys shorter than this are never matched by spelling (too little to be sure)
_MIN_CHARS = 6


def _count_films(folder: Path, _layout: str) -> dict[str, int]:
    return {"films": len(read_films(folder / DB_FILE))}


FILMS = CacheSpec(
    name="wikidata-films",
    label="the Wikidata film table",
    sources={
        "pypi": Archive(
            requirement=REQUIREMENT,
            members={DB_FILE: f"bokeh_sampledata/_data/{DB_FILE}"},
            sha256={DB_FILE: "1d9c6a02e488d0354b2309e16130c58820a91ac2ce417e814c5964f9579a65ac"},
        )
    },
    layouts={"sqlite": (DB_FILE,)},
    count=_count_films,
    expected={"films": 17_472},
    command="llmrec data fetch ml-1m --enrich wikidata",
)


def fetch_films(data_dir: Path | None = None, *, fetch: bool = True, log: Log = quiet) -> Path:
    """The cached ``movies.db`` (fetched from the ``bokeh-sampledata`` wheel when absent and
    ``fetch``); checked against the SHA-256 recorded when it was fetched."""
    folder, _layout = _fetch.cached(FILMS, data_dir, fetch_missing=fetch, log=log)
    return folder / DB_FILE


def read_films(path: Path) -> pd.DataFrame:
    """The film table: one row per film with a title, a year and at least one fact; columns
    ``ID``, ``Title``, ``Year`` (int) and the columns of :data:`FIELDS` (text; NULL is ``""``).

    Raises:
        DataError: one line when the file is not a SQLite database or lacks the table or a
            column.
    """
    columns = ["ID", "Title", "Year", *FIELDS.values()]
    try:
        # read-only: a path that is no database is never created; closing: ``with`` only commits
        with closing(sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)) as con:
            _check_columns(con, columns, path)
            query = ", ".join(f'"{c}"' for c in columns)
            rows = con.execute(f'SELECT {query} FROM "{TABLE}"').fetchall()
    except sqlite3.Error as exc:
        raise DataError(f"cannot read the film table {TABLE!r}: {exc}", file=str(path)) from None
    frame = pd.DataFrame(rows, columns=columns)
    year = pd.to_numeric(frame["Year"], errors="coerce")
    frame = frame[year.notna() & frame["Title"].notna()].copy()
    frame["Year"] = year[frame.index].astype(np.int64)
    frame["Title"] = frame["Title"].astype(str)
    facts = list(FIELDS.values())
    frame[facts] = frame[facts].map(_text)
    return frame[(frame[facts] != "").any(axis=1)].reset_index(drop=True)


def _check_columns(con: sqlite3.Connection, columns: Sequence[str], path: Path) -> None:
    # a quoted name that is no column reads as a string literal in SQLite: check them first
    present = {row[1] for row in con.execute(f'PRAGMA table_info("{TABLE}")')}
    if not present:
        raise DataError(
            f"has no table {TABLE!r}; is it the bokeh-sampledata movies.db?", file=str(path)
        )
    missing = [c for c in columns if c not in present]
    if missing:
        raise DataError(f"table {TABLE!r} lacks the columns {missing}", file=str(path))


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value).strip()


# --- title keys --------------------------------------------------------------------------------

#: articles MovieLens moves behind a title ("Postino, Il"), in the languages its titles use
ARTICLES = frozenset(
    ["the", "a", "an", "le", "la", "les", "l'", "il", "lo", "i", "gli", "el", "los", "las",
     "der", "die", "das", "den", "det", "o", "os", "un", "une"]
)  # fmt: skip
#: the articles as :func:`fold` sees them ("L'Uomo" splits into "l uomo")
_FOLDED_ARTICLES = frozenset(article.rstrip("'") for article in ARTICLES)
#: words written either way in film titles ("Twelve Monkeys" / "12 Monkeys", "Part II" /
#: "Part 2", "Dr." / "Doctor"), each mapped to one spelling
_SAME_WORD = {
    "ii": "2", "iii": "3", "iv": "4", "v": "5", "vi": "6", "vii": "7", "viii": "8", "ix": "9",
    "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
    "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "dr": "doctor", "mr": "mister", "st": "saint", "blvd": "boulevard", "vs": "versus",
}  # fmt: skip
_TRAILING_ARTICLE = re.compile(r"^(?P<title>.+), (?P<article>[^\W\d_]+'?)$")
_AKA = re.compile(r",?\s*\ba\.?k\.?a\.?\s+", re.IGNORECASE)
_SUBTITLE = re.compile(r":\s|\s[-–]\s|,? or:? ", re.IGNORECASE)
#: "National Lampoon's Vacation", "Jackie Chan's First Strike": an owner of two or more words
_OWNER = re.compile(r"^(?:[\w.]+\s+)+[\w.]+'s?\s+(?P<rest>.+)$")
_DISAMBIGUATION = re.compile(r"^(\d{4}\s+)?film$", re.IGNORECASE)


def front_article(title: str) -> str:
    """``"Bug's Life, A"`` -> ``"A Bug's Life"``, ``"Uomo delle stelle, L'"`` ->
    ``"L'Uomo delle stelle"``; other titles are returned unchanged."""
    match = _TRAILING_ARTICLE.match(title.strip())
    if match is None or match["article"].casefold() not in ARTICLES:
        return title.strip()
    article = match["article"]
    space = "" if article.endswith("'") else " "
    return f"{article}{space}{match['title']}"


def fold(title: str) -> str:
    """A title reduced to what spelling conventions do not change: accents, case and
    punctuation dropped, ``&`` as ``and``, numbers as digits (roman II-IX, words one-twelve),
    a few abbreviations written out, the word "part" and a leading article dropped, no spaces
    (so "Chainsaw" meets "Chain Saw")."""
    text = unicodedata.normalize("NFKD", title)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    words = re.sub(r"[\W_]+", " ", text.replace("&", " and ")).split()
    if len(words) > 1 and words[0] in _FOLDED_ARTICLES:
        words = words[1:]
    return "".join(_SAME_WORD.get(w, w) for w in words if w != "part")


def title_forms(title: str) -> list[str]:
    """The names a title gives a film: the main title, then each parenthesised alternate
    (``"(a.k.a. …)"`` lists split; Wikidata's ``"(film)"`` is no alternate), trailing articles
    moved to the front."""
    main, alternates = _split_alternates(title)
    forms = [main]
    for alternate in alternates:
        if not _DISAMBIGUATION.match(alternate.strip()):
            forms += [part for part in _AKA.split(alternate) if part.strip()]
    return [front_article(form) for form in forms]


def _split_alternates(title: str) -> tuple[str, list[str]]:
    """``"Seven (Se7en)"`` -> ``("Seven", ["Se7en"])``; an unclosed parenthesis
    (``"Associate, The (L'Associe"``) opens an alternate too."""
    alternates = re.findall(r"\(([^()]*)\)", title)
    main = re.sub(r"\s*\([^()]*\)", "", title).strip()
    if "(" in main:
        main, rest = main.split("(", 1)
        alternates.append(rest)
    return main.strip(), alternates


def title_keys(title: str) -> tuple[str, ...]:
    """The keys a title is matched by, the main title's first (no empty keys, no repeats)."""
    return _Keys.of(title).full


def short_keys(title: str) -> tuple[str, ...]:
    """Keys of a title's shorter forms: the first and the last part of a title with subtitles,
    and all after the first (``"Star Wars: Episode VI – Return of the Jedi"``, ``"Dr.
    Strangelove or: How I Learned …"``), and the title without a possessive owner of two or
    more words (``"National Lampoon's Vacation"`` -> ``"Vacation"``)."""
    return _Keys.of(title).short


@dataclass(frozen=True)
class _Keys:
    """A title's keys (:func:`title_keys`) and its shorter forms' keys (:func:`short_keys`)."""

    full: tuple[str, ...]
    short: tuple[str, ...]

    @classmethod
    def of(cls, title: str) -> _Keys:
        forms = title_forms(title)
        full = tuple(dict.fromkeys(k for k in map(fold, forms) if k))
        shorter = [part for form in forms for part in _shorter_forms(form)]
        short = tuple(dict.fromkeys(k for k in map(fold, shorter) if k and k not in full))
        return cls(full, short)


def _shorter_forms(form: str) -> list[str]:
    parts = _SUBTITLE.split(form)
    shorter = [parts[0], parts[-1], _SUBTITLE.split(form, maxsplit=1)[1]] if len(parts) > 1 else []
    owner = _OWNER.match(form)
    return shorter + ([owner["rest"]] if owner is not None else [])


# --- matching ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilmMatch:
    """Which film each item matched.

    Attributes:
        rows: ``(n_items,)`` int64 row of the film table each item matched, -1 for none.
        tiers: ``(n_items,)`` object name of the tier that matched it (:data:`TIERS`), or None.
    """

    rows: np.ndarray
    tiers: np.ndarray

    @property
    def n_matched(self) -> int:
        return int((self.rows >= 0).sum())

    def by_tier(self) -> dict[str, int]:
        """How many items each tier matched, in tier order."""
        return {tier: int((self.tiers == tier).sum()) for tier in TIERS}


def match_films(
    titles: Sequence[str | None], years: Sequence[object], films: pd.DataFrame
) -> FilmMatch:
    """Match items (title without year, year) to rows of :func:`read_films`'s table.

    Tiers, tried in :data:`TIERS` order, each on the items still unmatched and the films no
    earlier tier took (so a film a year off cannot take a film another item matched exactly):

    * ``exact``: a key of the item (:func:`title_keys`) equals a key of the film, same year;
    * ``year±1``: the same, the years one apart (release dates differ by country);
    * ``spelling``: keys at least 92% alike (difflib) with the same digits, years at most one
      apart (``"Buckaroo Bonzai"`` meets ``"Buckaroo Banzai"``; ``"Puppet Master 4"`` never
      meets ``"The Puppetmaster"``);
    * ``subtitle``: a shorter form of either title (:func:`short_keys`) equals a key of the
      other, years at most one apart.

    Ties go to the closer year, then the item's main title over its alternates (and, for
    spelling, the closer spelling), then the film listed first. Items without a year match
    nothing. Two items may match the same film (MovieLens-100K lists some films twice).
    """
    items = [
        (i, _Keys.of(str(title)), year)
        for i, (title, year) in enumerate(zip(titles, map(_year, years), strict=True))
        if title and year is not None
    ]
    rows = np.full(len(titles), -1, dtype=np.int64)
    tiers = np.full(len(titles), None, dtype=object)
    index = _FilmIndex(films)
    for tier in TIERS:
        found = {}
        for i, keys, year in items:
            best = index.best(tier, keys, year) if rows[i] < 0 else None
            if best is not None:
                found[i] = best
        for i, row in found.items():
            rows[i], tiers[i] = row, tier
        index.claimed.update(found.values())
    return FilmMatch(rows, tiers)


def _year(value: object) -> int | None:
    try:
        return int(float(str(value)))
    except (ValueError, OverflowError):  # None, NaN, "", "unknown", inf
        return None


#: a possible match: (rank, film row); the lowest rank wins
_Candidate = tuple[tuple[float, ...], int]


class _FilmIndex:
    """The film table keyed for each tier; films in ``claimed`` are no longer offered."""

    def __init__(self, films: pd.DataFrame) -> None:
        self.full: dict[tuple[str, int], list[int]] = defaultdict(list)
        self.short: dict[tuple[str, int], list[int]] = defaultdict(list)
        #: year -> (key, its digits, film row) of every film key, for the spelling tier
        self.by_year: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
        self.claimed: set[int] = set()
        for row, (title, year) in enumerate(zip(films["Title"], films["Year"], strict=True)):
            keys = _Keys.of(title)
            for key in keys.full:
                self.full[key, int(year)].append(row)
                self.by_year[int(year)].append((key, _digits(key), row))
            for key in keys.short:
                self.short[key, int(year)].append(row)

    def best(self, tier: str, keys: _Keys, year: int) -> int | None:
        if tier == "exact":
            found = self._lookup(self.full, keys.full, year, (0,))
        elif tier == "year±1":
            found = self._lookup(self.full, keys.full, year, (-1, 1))
        elif tier == "spelling":
            found = self._spelling(keys.full, year)
        else:
            found = self._lookup(self.short, keys.full, year, (0, -1, 1))
            found += self._lookup(self.full, keys.short, year, (0, -1, 1))
        return min(found)[1] if found else None

    def _lookup(
        self,
        table: dict[tuple[str, int], list[int]],
        keys: Sequence[str],
        year: int,
        offsets: Sequence[int],
    ) -> list[_Candidate]:
        return [
            ((abs(dy), k, row), row)
            for dy in offsets
            for k, key in enumerate(keys)
            for row in table.get((key, year + dy), ())
            if row not in self.claimed
        ]

    def _spelling(self, keys: Sequence[str], year: int) -> list[_Candidate]:
        found: list[_Candidate] = []
        wanted = [(k, key, _digits(key)) for k, key in enumerate(keys) if len(key) >= _MIN_CHARS]
        for dy in (0, -1, 1):
            for film_key, digits, row in self.by_year.get(year + dy, ()):
                for k, key, key_digits in wanted:
                    if digits == key_digits and row not in self.claimed:
                        ratio = _alike(key, film_key)
                        if ratio is not None:
                            found.append(((abs(dy), k, -ratio, row), row))
        return found


def _alike(a: str, b: str) -> float | None:
    """difflib's ratio of two keys when it reaches :data:`SPELLING_RATIO`, else None."""
    if len(b) < _MIN_CHARS or 2 * min(len(a), len(b)) < SPELLING_RATIO * (len(a) + len(b)):
        return None  # the length alone rules it out (difflib's real_quick_ratio)
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if matcher.quick_ratio() < SPELLING_RATIO:
        return None
    ratio = matcher.ratio()
    return ratio if ratio >= SPELLING_RATIO else None


def _digits(key: str) -> str:
    return "".join(ch for ch in key if ch.isdigit())


# --- enrichment --------------------------------------------------------------------------------


def enrich_with_films(data: Dataset, films: pd.DataFrame) -> Dataset:
    """``data``, named ``NAME+wikidata``, with the film fields (:data:`FIELDS`) added to its
    item text.

    Items are matched by their ``title`` and ``year`` text fields (:func:`match_films`);
    unmatched items get empty strings, so a template naming a film field renders for every
    item. Interactions, ids and user attributes are shared with ``data``, not copied.

    Raises:
        DataError: when ``data`` has no ``title`` or ``year`` item text field, or already has
            one of the film fields.
    """
    text = data.item_text
    missing = [f for f in ("title", "year") if f not in text.columns]
    if missing:
        raise DataError(
            f"the Wikidata film enrichment matches items by their 'title' and 'year' text "
            f"fields; {data.name!r} lacks {missing} (its fields are {list(text.columns)})"
        )
    clash = [f for f in FIELDS if f in text.columns]
    if clash:
        raise DataError(f"{data.name!r} already has the item text fields {clash}")
    match = match_films(list(text["title"]), list(text["year"]), films)
    return Dataset(
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        users=data.users,
        items=data.items,
        timestamps=data.timestamps,
        ratings=data.ratings,
        item_text=pd.concat([text, _film_fields(films, match.rows)], axis=1),
        user_attrs=data.user_attrs,
        name=f"{data.name}+wikidata",
    )


def _film_fields(films: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """``(len(rows), len(FIELDS))`` text of each matched film; ``""`` where rows is -1."""
    matched = rows >= 0
    out = {}
    for field, column in FIELDS.items():
        values = np.full(len(rows), "", dtype=object)
        values[matched] = films[column].to_numpy(dtype=object)[rows[matched]]
        out[field] = values
    return pd.DataFrame(out, index=pd.RangeIndex(len(rows)), dtype=object)


def film_coverage(data: Dataset) -> tuple[int, int] | None:
    """``(items with film facts, items)`` of an enriched dataset; None when not enriched.

    An item has film facts when any film field is non-empty; :func:`read_films` keeps only
    films with at least one, so this counts the matched items."""
    text = data.item_text
    if not all(f in text.columns for f in FIELDS):
        return None
    filled = (text[list(FIELDS)].fillna("").astype(str) != "").any(axis=1)
    return int(filled.sum()), data.n_items
