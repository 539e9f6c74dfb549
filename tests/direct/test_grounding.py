"""Parsing and grounding of generated rankings: labels, titles, garbage, repeats, inventions."""

import pytest

from llmrec.paradigms.direct.grounding import Grounder, normalize_title, split_entries

CATALOGUE = [
    "Toy Story (1995)",
    "Usual Suspects, The (1995)",
    "Star Wars (1977)",
    "Heat (1995)",
    "Fargo (1996)",
    "Casablanca (1942)",
]
CANDIDATES = ["Toy Story (1995)", "Usual Suspects, The (1995)", "Star Wars (1977)", "Heat (1995)"]
LABELS = [" A", " B", " C", " D"]


@pytest.fixture
def grounder():
    return Grounder(CATALOGUE)


def test_normalize_title():
    assert normalize_title('"Usual Suspects, The (1995)"') == "the usual suspects"
    assert normalize_title("  STAR   wars!! ") == "star wars"
    assert normalize_title("Amélie") == "amelie"


def test_split_entries_strips_markers_and_splits_label_lists():
    text = "1. Heat\n- Star Wars\n\n#3) Fargo\nB, A ,D"
    assert split_entries(text) == ["Heat", "Star Wars", "Fargo", "B", "A", "D"]


def test_titles_with_numbering_years_and_articles(grounder):
    answer = '1. "The Usual Suspects"\n2. Heat (1995)\n3. star wars'
    got = grounder.ground(answer, CANDIDATES, LABELS)
    assert got.slots == [1, 3, 2]
    assert (got.duplicates, got.hallucinations, got.off_candidates) == (0, 0, 0)


def test_fuzzy_title_match(grounder):
    got = grounder.ground("Toy Stroy\nStar Warz", CANDIDATES, LABELS)
    assert got.slots == [0, 2]


def test_labels_with_or_without_titles(grounder):
    got = grounder.ground('C. "Star Wars (1977)"\nA\n(D)', CANDIDATES, LABELS)
    assert got.slots == [2, 0, 3]


def test_a_title_starting_with_a_capital_word_is_not_a_label():
    grounder = Grounder(["A Few Good Men", "Heat"])
    got = grounder.ground("A Few Good Men", ["Heat", "A Few Good Men"], [" A", " B"])
    assert got.slots == [1]


def test_duplicates_are_counted_once_ranked(grounder):
    got = grounder.ground("Heat\nHeat (1995)\nD\nToy Story", CANDIDATES, LABELS)
    assert got.slots == [3, 0]
    assert got.duplicates == 2


def test_off_candidate_and_hallucinated_titles(grounder):
    got = grounder.ground("Fargo\nThe Matrix Reloaded Again\nHeat", CANDIDATES, LABELS)
    assert got.slots == [3]
    assert got.off_candidates == 1  # Fargo is in the catalogue, not a candidate
    assert got.hallucinations == 1


@pytest.mark.parametrize("answer", ["", "   \n\n", "I cannot help with that.", "§§§ ### ???", "Z"])
def test_garbage_grounds_to_nothing_without_raising(grounder, answer):
    got = grounder.ground(answer, CANDIDATES, LABELS)
    assert got.slots == [] and got.unparseable
