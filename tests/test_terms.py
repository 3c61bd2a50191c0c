"""The term grammar: what each term matches, what it refuses to parse, and how it is sent to an engine.

Every row of MATCHES is one term against one text; the table is the grammar's specification
(``docs/terms.md`` shows the same rules).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from observatory_pipelines.core.collection.terms import (
    MAX_CLAUSES,
    Hashtag,
    Phrase,
    TermMatcher,
    TermSyntaxError,
    Word,
    parse_term,
)

MATCHES = [
    # words: whole words, any case, Danish letters are letters
    ("klima", "Klima er valgets tema.", True),
    ("klima", "KLIMA!", True),
    ("klima", "Klimaet er valgets tema.", False),
    ("klima", "klimakrisen", False),
    ("klima", "Debat om klima-afgiften", True),
    ("klima", "#klima", True),
    ("grøn", "Grøn energi", True),
    ("grøn", "grønne løsninger", False),
    ("grøn", "GRØN", True),
    ("ø", "Fanø er en ø i Vadehavet", True),
    ("ø", "Fanø", False),
    ("åen", "Ved åen i Århus", True),
    ("æble", "Æblet faldt", False),
    ("Århus", "århus kommune", True),
    ("CO2-afgift", "Ny CO2-afgift på landbruget", True),
    ("CO2-afgift", "co2-afgiften stiger", False),
    ("dr.dk", "Læs mere på dr.dk/nyheder", True),
    # phrases: the words in order, any whitespace between
    ('"grøn omstilling"', "Den grønne omstilling", False),
    ('"grøn omstilling"', "Grøn   omstilling nu", True),
    ('"grøn omstilling"', "grøn\nomstilling", True),
    ('"grøn omstilling"', "omstilling til grøn energi", False),
    ('"grøn omstilling"', "grøn omstillingsplan", False),
    # unquoted words side by side: all of them, anywhere
    ("grøn omstilling", "omstilling til grøn energi", True),
    ("grøn omstilling", "grøn energi", False),
    ("klima AND landbrug", "Landbrug og klima", True),
    # hashtags: only the hashtag
    ("#dkpol", "Se #DKpol i aften", True),
    ("#dkpol", "dkpol uden hashtag", False),
    ("#dkpol", "#dkpolitik", False),
    ("#dkpol", "##dkpol", False),
    ("#grønland", "Fokus på #Grønland", True),
    # exclusions
    ("klima -atomkraft", "Klima og vind", True),
    ("klima -atomkraft", "Klima og atomkraft", False),
    ("klima -atomkraft", "Klima og atomkraftværker", True),
    ('klima -"grøn omstilling"', "Klima og grøn omstilling", False),
    ("klima -(atomkraft OR kul)", "Klima uden kul", False),
    ("klima -(atomkraft OR kul)", "Klima uden olie", True),
    # any-of and groups
    ("havvind OR vindmøller", "Nye vindmøller på land", True),
    ("havvind OR vindmøller", "Vindmølleparken", False),
    ("(havvind OR vindmøller) støj", "Vindmøller giver støj", True),
    ("(havvind OR vindmøller) støj", "Havvind er stille", False),
    ("(havvind OR vindmøller) støj", "Støj fra motorvejen", False),
    ("(a b) OR c", "b a", True),
    ("(a b) OR c", "a", False),
    ('("grøn omstilling" OR #klima) -atomkraft', "#klima debat", True),
    ('("grøn omstilling" OR #klima) -atomkraft', "#klima og atomkraft", False),
    ("(klima OR miljø) (afgift OR skat)", "Miljø-skat på benzin", True),
    ("(klima OR miljø) (afgift OR skat)", "Miljø og klima", False),
]


@pytest.mark.parametrize(("term", "text", "expected"), MATCHES, ids=[f"{t}|{x}" for t, x, _ in MATCHES])
def test_a_term_matches_what_the_grammar_says(term: str, text: str, expected: bool):
    matcher = TermMatcher([term])
    assert (matcher.match(text) == [parse_term(term).text]) is expected


def test_the_table_covers_at_least_thirty_cases():
    assert len(MATCHES) >= 30


REFUSED = [
    ("", "empty"),
    ("   ", "empty"),
    ("-atomkraft", "excludes from nothing"),
    ("klima OR -atomkraft", "excludes from nothing"),
    ("klima - atomkraft", "excludes nothing"),
    ("a b OR c", "parentheses"),
    ("a OR b c", "parentheses"),
    ("(klima", "never closed"),
    ("klima)", "closes nothing"),
    ('"grøn omstilling', "never closed"),
    ('""', "empty"),
    ("OR klima", "nothing before it"),
    ("klima OR", "nothing after it"),
    ("NOT atomkraft", "minus"),
    ("AND klima", "each side"),
    ("#", "not a hashtag"),
    ("#grøn-omstilling", "not a hashtag"),
    ("()", "nothing to search for"),
    ("klima\nvind", "one line"),
]


@pytest.mark.parametrize(("term", "says"), REFUSED)
def test_a_malformed_term_is_one_line_that_says_what_to_fix(term: str, says: str):
    with pytest.raises(TermSyntaxError) as err:
        parse_term(term)
    message = str(err.value)
    assert says in message
    assert "\n" not in message


def test_a_term_that_expands_too_far_is_refused():
    term = " ".join(f"(a{i} OR b{i})" for i in range(6))  # 2**6 = 64 clauses
    assert 2**6 > MAX_CLAUSES
    with pytest.raises(TermSyntaxError, match="64 alternatives"):
        parse_term(term)


@pytest.mark.parametrize(
    ("term", "kind"),
    [
        ("klima", "keyword"),
        ('"klima"', "keyword"),
        ('"grøn omstilling"', "phrase"),
        ("#dkpol", "hashtag"),
        ("grøn omstilling", "boolean"),
        ("klima -atomkraft", "boolean"),
        ("havvind OR vindmøller", "boolean"),
    ],
)
def test_each_term_has_the_kind_search_terms_records(term: str, kind: str):
    assert parse_term(term).kind == kind


def test_disjuncts_spell_a_term_as_all_of_clauses():
    clauses = parse_term('(havvind OR "nye vindmøller") støj -atomkraft').disjuncts()
    assert [(c.required, c.excluded) for c in clauses] == [
        ((Word("havvind"), Word("støj")), (Word("atomkraft"),)),
        ((Phrase(("nye", "vindmøller")), Word("støj")), (Word("atomkraft"),)),
    ]
    assert parse_term("#dkpol").disjuncts()[0].required == (Hashtag("dkpol"),)


def test_the_matcher_reports_the_terms_as_written_in_the_designs_order():
    matcher = TermMatcher(["vindmøller", "  klima -atomkraft ", '"grøn omstilling"', "vindmøller"])
    assert matcher.terms == ("vindmøller", "klima -atomkraft", '"grøn omstilling"')
    text = "Klima, vindmøller og grøn omstilling i Ærøskøbing"
    assert matcher.match(text) == ["vindmøller", "klima -atomkraft", '"grøn omstilling"']
    assert matcher.match("Klima og atomkraft") == []
    assert matcher.match(None, "") == []


def test_a_title_and_a_body_are_matched_as_separate_texts():
    # A phrase must not run from the end of the title into the start of the body.
    matcher = TermMatcher(['"grøn omstilling"', "klima landbrug"])
    assert matcher.match("Grøn", "Omstilling af landbruget") == []
    assert matcher.match("Klima", "Landbrug") == ["klima landbrug"]


def test_the_examples_in_docs_terms_md_are_what_the_code_does():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "terms.md").read_text(encoding="utf-8")
    examples = doc.split("## Examples", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(?P<term>[^`]+)` \| (?P<text>[^|]+) \| (?P<says>yes|no) \|$", examples, re.M)
    assert len(rows) >= 10
    for term, text, says in rows:
        assert (TermMatcher([term]).match(text) != []) is (says == "yes"), (term, text)
