"""The Wikidata film enrichment: the title normaliser (table-driven), the tiered join on a tiny
film table, the SQLite reader, the fetch from a wheel-shaped zip, and the film fields surfacing
in item text, by name and on the command line (tiny data made here; never the real files)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from llmrec.cli import main
from llmrec.data import Dataset, _fetch, from_frame, load_dataset
from llmrec.data import films as fm
from llmrec.errors import ConfigError, DataError
from llmrec.paradigms.embeddings.text_views import ItemView

from .conftest import patch_archive, wheel_of

# --- the normaliser ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "front"),
    [
        ("Bug's Life, A", "A Bug's Life"),
        ("Postino, Il", "Il Postino"),
        ("Misérables, Les", "Les Misérables"),
        ("Boot, Das", "Das Boot"),
        ("Dorado, El", "El Dorado"),
        ("Uomo delle stelle, L'", "L'Uomo delle stelle"),
        ("Convento, O", "O Convento"),
        ("Once Upon a Time in the West", "Once Upon a Time in the West"),
        ("Goodbye, Lover", "Goodbye, Lover"),  # "Lover" is no article
        ("I, Robot", "I, Robot"),
    ],
)
def test_front_article(title, front):
    assert fm.front_article(title) == front


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Bug's Life, A", "A Bug's Life"),  # article moved
        ("Misérables, Les", "Les Miserables"),  # accents
        ("Cérémonie, La", "LA CEREMONIE"),  # case
        ("Relax... It's Just Sex", "Relax...It's Just Sex"),  # punctuation
        ("Love & Human Remains", "Love and Human Remains"),
        ("Texas Chainsaw Massacre, The", "The Texas Chain Saw Massacre"),  # spaces
        ("Fright Night Part II", "Fright Night Part 2"),  # roman numerals
        ("Karate Kid III, The", "The Karate Kid Part III"),  # "part"
        ("Twelve Monkeys", "12 Monkeys"),  # number words
        ("Doctor Dolittle", "Dr. Dolittle"),
        ("8 1/2", "8½"),
        ("Star Wars: Episode IV - A New Hope", "Star Wars: Episode IV – A New Hope"),
    ],
)
def test_fold_meets_spelling_conventions(a, b):
    assert fm.fold(fm.front_article(a)) == fm.fold(fm.front_article(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Puppet Master 4", "The Puppet Master"),
        ("Hamlet 2", "Hamlet"),
        ("Blue", "Three Colors: Blue"),
    ],
)
def test_fold_keeps_different_films_apart(a, b):
    assert fm.fold(a) != fm.fold(b)


@pytest.mark.parametrize(
    ("title", "keys"),
    [
        ("Toy Story", ("toystory",)),
        ("Postino, Il (The Postman)", ("postino", "postman")),
        (
            "Professional, The (a.k.a. Leon: The Professional)",
            ("professional", "leontheprofessional"),
        ),
        ("Hard 8 (a.k.a. Sydney, a.k.a. Hard Eight)", ("hard8", "sydney")),  # eight is 8
        ("Hate (Haine, La)", ("hate", "haine")),
        ("Associate, The (L'Associe", ("associate", "associe")),  # unclosed parenthesis
        ("Country Life (film)", ("countrylife",)),  # a disambiguation is no title
        ("Film", ("film",)),  # ... but a title may be "Film" (Beckett's, 1965)
        ("Seven (Se7en)", ("7", "se7en")),
    ],
)
def test_title_keys(title, keys):
    assert fm.title_keys(title) == keys


@pytest.mark.parametrize(
    ("title", "short"),
    [
        ("Halloween: H20", ("halloween", "h20")),
        (
            "Star Wars: Episode VI – Return of the Jedi",
            ("starwars", "returnofthejedi", "episode6returnofthejedi"),
        ),
        (
            "Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb",
            ("doctorstrangelove", "howilearnedtostopworryingandlovethebomb"),
        ),
        ("National Lampoon's Vacation", ("vacation",)),
        ("Schindler's List", ()),  # a one-word owner is part of the title
        ("Toy Story", ()),
    ],
)
def test_short_keys(title, short):
    assert fm.short_keys(title) == short


# --- the join ----------------------------------------------------------------------------------

#: (Title, Year, Director) rows of a tiny film table
FILM_ROWS = [
    ("A Bug's Life", 1998, "John Lasseter"),
    ("Il Postino: The Postman", 1994, "Michael Radford"),
    ("Home for the Holidays", 1996, "Jodie Foster"),
    ("Hamlet", 1990, "Franco Zeffirelli"),
    ("Hamlet", 1996, "Kenneth Branagh"),
    ("Buckaroo Banzai Across the 8th Dimension", 1984, "W. D. Richter"),
    ("The Puppetmaster", 1993, "Hou Hsiao-hsien"),
    ("Twin", 2001, "A"),
    ("Twin", 2001, "B"),
]


def film_table(rows: list[tuple[str, int, str]] = FILM_ROWS) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"ID": range(len(rows)), "Title": [r[0] for r in rows], "Year": [r[1] for r in rows]}
    )
    for column in fm.FIELDS.values():
        frame[column] = ""
    frame["Director"] = [r[2] for r in rows]
    return frame


@pytest.mark.parametrize(
    ("title", "year", "director", "tier"),
    [
        ("Bug's Life, A", "1998", "John Lasseter", "exact"),
        ("Home for the Holidays", "1995", "Jodie Foster", "year±1"),  # a year off
        ("Hamlet", "1996", "Kenneth Branagh", "exact"),  # the same year wins
        ("Buckaroo Bonzai Across the 8th Dimension", 1984, "W. D. Richter", "spelling"),
        ("Postino, Il", "1994", "Michael Radford", "subtitle"),
        ("Puppet Master 4", "1993", None, None),  # the digits differ: no spelling match
        ("Toy Story", "1995", None, None),
        ("Bug's Life, A", None, None, None),  # no year: no match
        ("Twin", "2001", "A", "exact"),  # a tie goes to the film listed first
    ],
)
def test_match_tiers(title, year, director, tier):
    films = film_table()
    match = fm.match_films([title], [year], films)
    assert match.tiers[0] == tier
    found = films["Director"][match.rows[0]] if match.rows[0] >= 0 else None
    assert found == director


def test_a_film_taken_by_an_exact_match_is_not_offered_a_year_off():
    films = film_table([("Hamlet", 1990, "Zeffirelli")])
    match = fm.match_films(["Hamlet", "Hamlet"], ["1991", "1990"], films)
    assert match.rows.tolist() == [-1, 0]
    assert match.by_tier() == {"exact": 1, "year±1": 0, "spelling": 0, "subtitle": 0}
    assert match.n_matched == 1


def test_the_same_film_listed_twice_matches_twice():
    match = fm.match_films(["Hamlet", "Hamlet"], ["1990", "1990"], film_table())
    assert match.rows.tolist() == [3, 3]


# --- the SQLite file ---------------------------------------------------------------------------

OMDB = (
    'CREATE TABLE omdb ("ID" INTEGER, "imdbID" TEXT, "Title" TEXT, "Year" INTEGER, '
    '"Director" TEXT, "Writer" TEXT, "Cast" TEXT, "Genre" TEXT, "Language" TEXT, '
    '"Country" TEXT, "Awards" TEXT)'
)


def write_movies_db(path: Path, rows: list[tuple[object, ...]] | None = None) -> Path:
    """A tiny ``movies.db`` with the columns llmrec reads (and one it does not)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = rows or [
        (1, "tt1", "A Bug's Life", 1998, "John Lasseter", None, "Dave Foley, Kevin Spacey",
         "Animation", "English", "United States", None),
        (2, "tt2", "Il Postino: The Postman", 1994, "Michael Radford", "Massimo Troisi", "",
         "Drama", "Italian", "Italy", "Won 1 Oscar."),
        (3, "tt3", "Nothing Known", 1990, "", None, "", "", None, "", None),
        (4, "tt4", None, 1991, "Somebody", None, "", "", None, "", None),
    ]  # fmt: skip
    with sqlite3.connect(path) as con:
        con.execute(OMDB)
        con.executemany(f"INSERT INTO omdb VALUES ({', '.join('?' * 11)})", rows)
    con.close()
    return path


def test_read_films_turns_null_into_empty_text_and_drops_films_without_facts(tmp_path):
    films = fm.read_films(write_movies_db(tmp_path / "movies.db"))
    assert films["Title"].tolist() == ["A Bug's Life", "Il Postino: The Postman"]
    assert films["Year"].tolist() == [1998, 1994]
    assert films["Writer"].tolist() == ["", "Massimo Troisi"]
    assert films["Awards"].tolist() == ["", "Won 1 Oscar."]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("CREATE TABLE other (x INTEGER)", "has no table 'omdb'"),
        (
            "CREATE TABLE omdb (Title TEXT, Year INTEGER)",
            "table 'omdb' lacks the columns \\['ID', ",
        ),
    ],
)
def test_a_movies_db_without_the_table_is_one_line(tmp_path, setup, message):
    path = tmp_path / "movies.db"
    with sqlite3.connect(path) as con:
        con.execute(setup)
    con.close()
    with pytest.raises(DataError, match=message) as exc:
        fm.read_films(path)
    assert str(exc.value).startswith(str(path)) and "\n" not in str(exc.value)


def test_a_file_that_is_not_sqlite_is_one_line(tmp_path):
    path = tmp_path / "movies.db"
    path.write_bytes(b"PK\x03\x04 not a database at all" * 100)
    with pytest.raises(DataError, match="cannot read the film table"):
        fm.read_films(path)


# --- enrichment --------------------------------------------------------------------------------


def film_dataset() -> Dataset:
    events = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [10, 20, 30]})
    items = pd.DataFrame(
        {
            "item_id": [10, 20, 30],
            "title": ["Bug's Life, A", "Postino, Il (The Postman)", "Toy Story"],
            "year": ["1998", "1994", "1995"],
        }
    )
    return from_frame(events, items=items, name="films")


def test_enrichment_adds_the_film_fields_and_blanks_for_unmatched_items(tmp_path):
    films = fm.read_films(write_movies_db(tmp_path / "movies.db"))
    data = fm.enrich_with_films(film_dataset(), films)
    assert data.name == "films+wikidata"
    assert data.item_text.columns.tolist() == ["title", "year", *fm.FIELDS]
    assert data.item_text["director"].tolist() == ["John Lasseter", "Michael Radford", ""]
    texts = data.item_texts("{title} ({year}), directed by {director}. Cast: {cast}")
    assert texts == [
        "Bug's Life, A (1998), directed by John Lasseter. Cast: Dave Foley, Kevin Spacey",
        "Postino, Il (The Postman) (1994), directed by Michael Radford. Cast: ",
        "Toy Story (1995), directed by . Cast: ",  # unmatched: the template still renders
    ]
    assert fm.film_coverage(data) == (2, 3)
    assert fm.film_coverage(film_dataset()) is None
    view = ItemView(template="{title}: {film_genres} in {language}")  # what encoders read
    assert view.render(data)[1:] == [
        "Postino, Il (The Postman): Drama in Italian",
        "Toy Story:  in ",
    ]


def test_enrichment_needs_title_and_year():
    data = from_frame(pd.DataFrame({"user_id": [1], "item_id": [1]}), name="bare")
    with pytest.raises(DataError, match=r"'bare' lacks \['title', 'year'\]"):
        fm.enrich_with_films(data, film_table())


def test_enriching_twice_is_refused(tmp_path):
    data = fm.enrich_with_films(film_dataset(), film_table())
    with pytest.raises(DataError, match="already has the item text fields"):
        fm.enrich_with_films(data, film_table())


# --- fetching the table and naming the enriched dataset ----------------------------------------


@pytest.fixture
def tiny_films(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_pypi: dict[str, Path]) -> Path:
    """Fetching the film table pointed at a tiny bokeh-sampledata wheel (pip never runs)."""
    files = tmp_path / "db"
    write_movies_db(files / fm.DB_FILE)
    wheel = wheel_of(
        files, tmp_path / "bokeh_sampledata-2026.1-py3-none-any.whl", "bokeh_sampledata/_data/"
    )
    fake_pypi[fm.REQUIREMENT] = wheel
    patch_archive(
        monkeypatch, fm, "FILMS", "pypi", sha256={fm.DB_FILE: _fetch.sha256(files / fm.DB_FILE)}
    )
    monkeypatch.setattr(fm, "FILMS", replace(fm.FILMS, expected={"films": 2}))
    return wheel  # fmt: skip


def test_a_name_with_wikidata_enriches_any_film_dataset(tmp_path, tiny_films):
    path = tmp_path / "events.csv"
    path.write_text("user_id,item_id\n1,10\n1,20\n2,30\n")
    film_dataset_items = film_dataset().item_text.assign(item_id=[10, 20, 30])
    film_dataset_items.to_csv(tmp_path / "events.items.csv", index=False)
    data = load_dataset(f"{path}+wikidata", data_dir=tmp_path / "cache")
    assert data.name == "events+wikidata"
    assert data.item_text["director"].tolist() == ["John Lasseter", "Michael Radford", ""]
    assert (tmp_path / "cache" / "wikidata-films" / "manifest.json").is_file()
    tiny_films.unlink()  # the cached copy serves from now on
    assert load_dataset(f"{path}+WIKIDATA", data_dir=tmp_path / "cache").n_items == 3


def test_without_fetch_a_missing_film_table_names_the_command(tmp_path):
    with pytest.raises(DataError, match=r"run: llmrec data fetch ml-1m --enrich wikidata"):
        load_dataset("synthetic:5x5x20+wikidata", data_dir=tmp_path, fetch=False)


def test_an_unknown_enrichment_is_an_unknown_dataset(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown dataset 'ml-1m\+imdb'.*may end in \+wikidata"):
        load_dataset("ml-1m+imdb", data_dir=tmp_path)


def test_cli_fetch_with_enrich_reports_coverage_and_info_shows_it(
    tmp_path, tiny_1m, tiny_films, capsys
):
    assert (
        main(["data", "fetch", "ml-1m", "--enrich", "wikidata", "--data-dir", str(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "verified: 9 interactions, 4 items, 3 users" in out
    assert "wikidata films cached in" in out and "(2 films, CC0)" in out
    assert "film facts: 2 of 4 items (50.0%) (exact 1, year±1 0, spelling 0, subtitle 1)" in out
    assert main(["data", "info", "ml-1m+wikidata", "--data-dir", str(tmp_path), "--no-fetch"]) == 0
    out = capsys.readouterr().out
    assert "film facts       2 of 4 items (50.0%)" in out
    assert "director, writer, cast, film_genres, language, country, awards" in out
