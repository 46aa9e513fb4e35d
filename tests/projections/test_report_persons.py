"""Natural persons in the auth.016 report: the CONCAT code (RTS 22 Art. 6(4) and ESMA's
guidelines), the persons file, and a natural person's PersonIdentification10 valid
against the XSD; without an identity, a refusal naming the account, never an invented id."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from projections.reports.iso20022 import AUTH016_NS, ReportRefused, build_report
from projections.reports.persons import (
    COLUMNS,
    PersonError,
    PersonIdentity,
    concat_code,
    latin_letters,
    name_part,
    read_persons,
)
from schemas.events import BeneficialOwner, OwnerKind
from tests.projections.iso20022_helpers import CONFIG, OWNERS, fill, validate

A = f"{{{AUTH016_NS}}}"
HEADER = ",".join(COLUMNS)


@pytest.mark.parametrize(
    ("born", "first", "surname", "code"),
    [
        # RTS 22 Art. 6(4)'s rule as the public explanations of it show it
        (date(1985, 12, 5), "John", "Engholm", "19851205JOHN#ENGHO"),
        (date(1972, 7, 3), "Melissa", "Smith", "19720703MELISSMITH"),
        # the rule's parts: a prefix of its own left out, not one joined to the name
        (date(1960, 1, 1), "Ludwig", "van der Rohe", "19600101LUDWIROHE#"),
        (date(1960, 1, 1), "Victor", "Vandenberg", "19600101VICTOVANDE"),
        (date(1960, 1, 1), "John", "O'Brian", "19600101JOHN#OBRIA"),
        (date(1960, 1, 1), "Giovani", "dos Santos", "19600101GIOVASANTO"),
        # accents off, ß as SS, Ø as O; a hyphenated first name is one name
        (date(1960, 1, 1), "Günter", "Voß", "19600101GUNTEVOSS#"),
        (date(1960, 1, 1), "Eli", "Ødegård", "19600101ELI##ODEGA"),
        (date(1960, 1, 1), "Amy-Ally", "Garção de Magalhães", "19600101AMYALGARCA"),
        # the first first name only; a title left out
        (date(1960, 1, 1), "Jon Ian", "Dewitt", "19600101JON##DEWIT"),
        (date(1960, 1, 1), "Dr. Ann", "Lee", "19600101ANN##LEE##"),
        # a surname that is only a prefix keeps it (nothing else to take)
        (date(1960, 1, 1), "Anna", "Le", "19600101ANNA#LE###"),
    ],
)
def test_concat_codes(born: date, first: str, surname: str, code: str) -> None:
    assert concat_code("GB", born, first, surname) == "GB" + code


LATIN = "".join(
    c for c in map(chr, range(0x41, 0x180))
    if c.isalpha() and unicodedata.name(c).startswith("LATIN") and c != "ĸ"
)  # fmt: skip
"""Latin letters of Latin-1 and Latin Extended-A; `ĸ` has no ASCII base (refused below)."""
names = st.text(alphabet=st.sampled_from(LATIN + " -'.,"), max_size=30).filter(
    lambda s: any(c.isalpha() for c in s)
)


@given(
    country=st.from_regex(r"[A-Z]{2}", fullmatch=True),
    born=st.dates(min_value=date(1000, 1, 1)),
    first=names,
    surname=names,
)
def test_a_concat_code_is_20_characters_of_its_alphabet(
    country: str, born: date, first: str, surname: str
) -> None:
    code = concat_code(country, born, first, surname)
    assert re.fullmatch(r"[A-Z]{2}[0-9]{8}[A-Z#]{10}", code), code
    assert code.startswith(country + born.isoformat().replace("-", ""))
    assert "#" not in code[10:15].rstrip("#") and "#" not in code[15:].rstrip("#")
    assert code == concat_code(country, born, first, surname)


@given(text=st.text(alphabet=st.sampled_from(LATIN + " -'.,0123456789"), max_size=40))
def test_latin_letters_are_capitals_only(text: str) -> None:
    assert re.fullmatch(r"[A-Z]*", latin_letters(text))


@pytest.mark.parametrize("name", ["Ζωή", "Иван", "Aµ", "Kĸ", "---", ""])
def test_a_name_without_a_latin_letter_has_no_code(name: str) -> None:
    with pytest.raises(ValueError):
        name_part(name, surname=True)


def _row(*cells: str) -> str:
    return ",".join(cells)


def test_the_persons_file_gives_each_owner_its_identity() -> None:
    text = "\n".join(
        [
            HEADER,
            _row("o3", "Günter", "Voß", "1961-02-03", "DE", "CONCAT", ""),
            _row("o4", "Jan Piet", "de Vries", "1990-12-31", "NL", "CCPT", "NLXR1234567"),
            _row("o5", "Anna", "Rossi", "1970-05-06", "IT", "CONCAT", "IT19700506ANNA#ROSSI"),
        ]
    )
    persons = read_persons(text)
    assert persons["o3"] == PersonIdentity(
        "Günter", "Voß", date(1961, 2, 3), "DE", "CONCAT", "DE19610203GUNTEVOSS#"
    )
    assert persons["o4"].identifier == "NLXR1234567" and persons["o4"].scheme == "CCPT"
    assert persons["o5"].identifier == "IT19700506ANNA#ROSSI"


def test_every_bad_line_of_the_persons_file_is_named() -> None:
    text = "\n".join(
        [
            HEADER,
            _row("o1", "Anna", "Rossi", "1970-13-06", "IT", "CONCAT", ""),
            _row("o2", "Anna", "Rossi", "1970-05-06", "IT", "CONCAT", "IT19700506ANNAXROSSI"),
            _row("o3", "Anna", "Rossi", "1970-05-06", "IT", "NIDN", "RSSNNA70E46H501X"),
            _row("o4", "Anna", "Rossi", "1970-05-06", "IT", "TAXID", "IT1"),
            _row("o5", "Ζωή", "Παππά", "1970-05-06", "GR", "CONCAT", ""),
            _row("o6", "Anna", "Rossi"),
            _row("o5", "Zoe", "Pappa", "1970-05-06", "GR", "CONCAT", ""),  # its line was bad
        ]
    )
    with pytest.raises(PersonError) as refused:
        read_persons(text)
    problems = refused.value.problems
    assert [p.split(":")[0].split(" (")[0] for p in problems] == [
        f"line {n}" for n in range(2, 9)
    ], problems
    assert "birth_date is not YYYY-MM-DD" in problems[0]
    assert "is not the code of the names and birth date" in problems[1]
    assert "NIDN identifier must be the nationality then the number" in problems[2]
    assert "scheme 'TAXID'" in problems[3]
    assert "a letter is not Latin" in problems[4]
    assert "3 fields, not 7" in problems[5]
    assert "owner o5 appears twice" in problems[6]


def test_no_refusal_quotes_a_name_a_birth_date_or_an_identifier() -> None:
    """They go to terminals and logs: the line, the owner id and the field say where to
    look, the values stay in the file."""
    text = "\n".join(
        [
            HEADER,
            _row("o1", "Zyxwvu", "Qponml", "1966-13-06", "IT", "CONCAT", ""),
            _row("o2", "Zyxwvu", "Qponml", "1966-05-06", "IT", "CONCAT", "IT19660506ZYXWVQPONX"),
            _row("o3", "Zyxwvu", "Qponml", "1966-05-06", "IT", "NIDN", "QQ1234"),
            _row("o4", "Zyxwvu", "Qponmλ", "1966-05-06", "IT", "CONCAT", ""),
            _row("o5", "Zyxwvu", "Qponml", "1966-05-06", "I1", "CONCAT", ""),
        ]
    )
    with pytest.raises(PersonError) as refused:
        read_persons(text)
    said = " ".join(refused.value.problems)
    assert len(refused.value.problems) == 5, said
    for value in ("Zyxw", "ZYXW", "Qpon", "QPON", "1966", "QQ1234", "λ", "I1"):
        assert value not in said


@pytest.mark.parametrize("born", ["19700506", "1970-W10-3", "1970-5-6", "06.05.1970", ""])
def test_a_birth_date_is_yyyy_mm_dd_only(born: str) -> None:
    """Python 3.11's date.fromisoformat reads 19700506 and the week date 1970-W10-3
    (4 March) too: a day written another way is a KYC export to look at, not to guess."""
    with pytest.raises(PersonError, match="line 2 \\(owner o1\\): birth_date is not YYYY-MM-DD"):
        read_persons(f"{HEADER}\n" + _row("o1", "Anna", "Rossi", born, "IT", "CONCAT", ""))


def test_a_persons_file_without_its_header_is_refused() -> None:
    with pytest.raises(PersonError, match="header"):
        read_persons(_row("o3", "Anna", "Rossi", "1970-05-06", "IT", "CONCAT", ""))


PERSONS = {
    "o3": PersonIdentity(
        "Anna Maria", "Rossi", date(1970, 5, 6), "IT", "CONCAT", "IT19700506ANNA#ROSSI"
    ),
    "o4": PersonIdentity("Jan", "de Vries", date(1990, 12, 31), "NL", "CCPT", "NLXR1234567"),
}
OWNERS_WITH_PEOPLE = {
    **OWNERS,
    "NAT2": BeneficialOwner(owner_id="o4", kind=OwnerKind.NATURAL, name="Jan", country="NL"),
}


def test_natural_persons_are_reported_by_name_birth_date_and_identifier() -> None:
    fills = [fill(1, account="NAT1"), fill(2, account="NAT2", side="SELL"), fill(3)]
    _, document = validate(build_report(fills, OWNERS_WITH_PEOPLE, CONFIG, PERSONS))
    news = document.findall(f"{A}FinInstrmRptgTxRpt/{A}Tx/{A}New")
    buyer = news[0].find(f"{A}Buyr/{A}AcctOwnr/{A}Id/{A}Prsn")
    assert [c.tag.removeprefix(A) for c in buyer] == ["FrstNm", "Nm", "BirthDt", "Othr"]
    assert buyer.findtext(f"{A}FrstNm") == "Anna Maria"
    assert buyer.findtext(f"{A}Nm") == "Rossi"
    assert buyer.findtext(f"{A}BirthDt") == "1970-05-06"
    assert buyer.findtext(f"{A}Othr/{A}Id") == "IT19700506ANNA#ROSSI"
    assert buyer.findtext(f"{A}Othr/{A}SchmeNm/{A}Prtry") == "CONCAT"
    seller = news[1].find(f"{A}Sellr/{A}AcctOwnr/{A}Id/{A}Prsn")
    assert seller.findtext(f"{A}Othr/{A}Id") == "NLXR1234567"
    assert seller.findtext(f"{A}Othr/{A}SchmeNm/{A}Cd") == "CCPT"
    assert news[1].findtext(f"{A}Buyr/{A}AcctOwnr/{A}Id/{A}MIC") == "XOFF"
    # a legal person is still reported by its LEI
    assert news[2].findtext(f"{A}Buyr/{A}AcctOwnr/{A}Id/{A}LEI") == OWNERS["ACC1"].lei
    # the same inputs, the same bytes, in any order of fills or persons
    again = build_report(fills[::-1], OWNERS_WITH_PEOPLE, CONFIG, dict(reversed(PERSONS.items())))
    assert again == build_report(fills, OWNERS_WITH_PEOPLE, CONFIG, PERSONS)


def test_a_natural_person_without_an_identity_refuses_naming_the_account() -> None:
    with pytest.raises(ReportRefused) as refused:
        build_report(
            [fill(1, account="NAT1"), fill(2, account="NAT2")],
            OWNERS_WITH_PEOPLE,
            CONFIG,
            {"o3": PERSONS["o3"]},
        )
    (problem,) = refused.value.problems
    assert problem.startswith("account(s) NAT2 (owner o4) belong to natural persons without")


def test_a_birth_date_after_the_trade_refuses() -> None:
    late = {"o3": PersonIdentity("Ann", "Lee", date(2027, 1, 1), "GB", "NIDN", "GBAB123456C")}
    with pytest.raises(ReportRefused, match="o3 of account NAT1 has a birth date after the trade"):
        build_report([fill(1, account="NAT1")], OWNERS, CONFIG, late)


@given(
    first=st.text(alphabet=st.sampled_from(LATIN), min_size=1, max_size=140),
    surname=st.text(alphabet=st.sampled_from(LATIN), min_size=1, max_size=140),
)
def test_any_latin_name_gives_a_valid_report(first: str, surname: str) -> None:
    code = concat_code("FR", date(1980, 2, 29), first, surname)
    person = PersonIdentity(first, surname, date(1980, 2, 29), "FR", "CONCAT", code)
    validate(build_report([fill(1, account="NAT1")], OWNERS, CONFIG, {"o3": person}))
