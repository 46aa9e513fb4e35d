"""Natural persons as a transaction report identifies them, and where that identity comes from.

auth.016.001.03 identifies a natural-person buyer or seller by `PersonIdentification10`:
first name(s), surname(s), birth date and one identifier. MiFIR's RTS 22 (Delegated
Regulation (EU) 2017/590, Art. 6 and Annex II) makes the identifier the person's
nationality (ISO 3166-1 alpha-2) followed by the national identifier Annex II gives that
country (a national id number, NIDN; a passport number, CCPT), or, where there is none,
the CONCAT code: birth date YYYYMMDD, then the first five characters of the first name
and of the surname, titles and name prefixes left out, upper case, letters only (accents
taken off), `#` filling a name shorter than five.

The identity is personal data, so it is not on the log (an immutable, forever-retained
log cannot erase it; docs/reports.md, *Natural persons*): the firm's KYC system exports
the fields the report needs, one row per beneficial owner, to a persons file the export
reads (`read_persons`). Pure: the same text gives the same identities, or the same
refusal naming each bad line. No message quotes a name, birth date or identifier: they
go to terminals and logs, which are not the place for personal data (a line number, the
owner id and the field say where to look).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass
from datetime import date

NIDN, CCPT, CONCAT = "NIDN", "CCPT", "CONCAT"
SCHEMES = (NIDN, CCPT, CONCAT)
"""NIDN and CCPT are ISO 20022 person-identification codes (`SchmeNm/Cd`); CONCAT is
ESMA's, written as a proprietary scheme (`SchmeNm/Prtry`: Cd holds 4 characters)."""

COLUMNS = ("owner_id", "first_name", "surname", "birth_date", "nationality", "scheme", "identifier")
"""The persons file's header, in this order."""

TITLES = frozenset(
    "atty coach dame dr fr gov honorable madam madame maid master miss monsieur mr mrs ms mx"
    " ofc ph.d pres prof rev sir".split()
)
"""Titles ESMA's guidelines list: left out of a name before its characters are taken."""

PREFIXES: tuple[tuple[str, ...], ...] = tuple(
    sorted(
        (
            tuple(p.split())
            for p in (
                "am", "auf", "auf dem", "aus der", "d", "da", "de", "de l'", "del", "de la",
                "de le", "di", "do", "dos", "du", "im", "la", "le", "mac", "mc", "mhac", "mhíc",
                "mhic giolla", "mic", "ni", "ní", "níc", "o", "ó", "ua", "ui", "uí", "van",
                "van de", "van den", "van der", "vom", "von", "von dem", "von den", "von der",
            )
        ),
        key=lambda words: (-len(words), words),
    )
)  # fmt: skip
"""Surname prefixes ESMA's guidelines list, longest first: left out when they are words of
their own before the rest of the surname (`van der Rohe`, not `Vandenberg` or `O'Brian`)."""

_FOLDED = {
    "Æ": "AE", "Œ": "OE", "Ø": "O", "Ł": "L", "Đ": "D", "Ð": "D", "Þ": "TH", "Ħ": "H",
    "Ŧ": "T", "Ŋ": "NG", "Ə": "E", "Ɨ": "I", "Ƶ": "Z", "Ɖ": "D",
}  # fmt: skip
"""Latin letters Unicode does not decompose into a base letter and an accent (upper case).
Any other letter without an ASCII base (`ĸ`, Greek, Cyrillic) refuses: `latin_letters`."""
_NOT_LETTER = re.compile(r"[^A-Z]")
_DIGITS_AND_CAPITALS = re.compile(r"[A-Z0-9]+")
_COUNTRY = re.compile(r"[A-Z]{2}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_UNWRITABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]")


class PersonError(ValueError):
    """An identity the report cannot state; `problems` says each reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


def latin_letters(text: str) -> str:
    """`text` in upper-case A-Z only: accents taken off (`é` -> `E`, `ß` -> `SS`, `Ø` ->
    `O`), everything that is not a letter left out (spaces, apostrophes, hyphens).
    Raises ValueError on a letter of another script: a transliteration is a choice (of
    the ID document's) the firm records, never one made here."""
    out = []
    for ch in text.upper():
        for c in unicodedata.normalize("NFKD", _FOLDED.get(ch, ch)):
            if c.isascii():
                out.append(c)
            elif unicodedata.category(c) in ("Lu", "Ll", "Lt", "Lo"):
                raise ValueError("a letter is not Latin: record the name transliterated")
    return _NOT_LETTER.sub("", "".join(out))


def _without_titles(words: list[str]) -> list[str]:
    while len(words) > 1 and words[0].lower().rstrip(".") in TITLES:
        words = words[1:]
    return words


def _without_prefix(words: list[str]) -> list[str]:
    lowered = [w.lower() for w in words]
    for prefix in PREFIXES:
        n = len(prefix)
        if len(words) > n and tuple(lowered[:n]) == prefix:
            return words[n:]
    return words


def name_part(name: str, *, surname: bool) -> str:
    """The five characters of a name in a CONCAT code: of the first first name (a
    hyphenated one is one name), or of the surname without its prefix; titles left out;
    `#` after a name shorter than five. ValueError if no letter is left."""
    words = _without_titles(name.split())
    words = _without_prefix(words) if surname else words[:1]
    letters = latin_letters("".join(words))
    if not letters:
        raise ValueError("a name has no letter to take")
    return letters[:5].ljust(5, "#")


def concat_code(nationality: str, birth_date: date, first_name: str, surname: str) -> str:
    """The national client identifier by CONCAT (RTS 22 Art. 6(4)), with its country:
    nationality, birth date YYYYMMDD, five of the first name, five of the surname.
    20 characters of [A-Z0-9#]."""
    if not _COUNTRY.fullmatch(nationality):
        raise ValueError("nationality is not an ISO 3166-1 alpha-2 code")
    day = f"{birth_date.year:04d}{birth_date.month:02d}{birth_date.day:02d}"
    return (
        f"{nationality}{day}{name_part(first_name, surname=False)}"
        f"{name_part(surname, surname=True)}"
    )


@dataclass(frozen=True)
class PersonIdentity:
    """What auth.016 states of a natural person, checked when made."""

    first_name: str
    """FrstNm: the first name(s) as on the identity document"""
    surname: str
    """Nm: the surname(s)"""
    birth_date: date
    nationality: str
    """ISO 3166-1 alpha-2; a person of several: the one RTS 22 Art. 6(3) says to use"""
    scheme: str
    """NIDN, CCPT or CONCAT: the identifier Annex II gives the nationality"""
    identifier: str
    """As reported: the nationality, then the national id or passport number; or the
    CONCAT code (derived: `concat_code`)"""

    def __post_init__(self) -> None:
        bad = []
        for what, value in (("first_name", self.first_name), ("surname", self.surname)):
            if not 1 <= len(value) <= 140 or value != value.strip():
                bad.append(f"{what} must be 1 to 140 characters, no space around them")
            elif _UNWRITABLE.search(value):
                bad.append(f"{what} has characters XML cannot carry")
        if not _COUNTRY.fullmatch(self.nationality):
            bad.append("nationality is not an ISO 3166-1 alpha-2 code")
        if self.scheme not in SCHEMES:
            bad.append(f"scheme {self.scheme!r} is none of {', '.join(SCHEMES)}")
        elif self.scheme == CONCAT and not bad:
            try:
                code = concat_code(self.nationality, self.birth_date, self.first_name, self.surname)
            except ValueError as exc:
                bad.append(f"no CONCAT code: {exc}")
            else:
                if self.identifier != code:
                    bad.append("CONCAT identifier is not the code of the names and birth date")
        elif self.scheme != CONCAT and not (
            len(self.identifier) <= 35
            and _DIGITS_AND_CAPITALS.fullmatch(self.identifier)
            and self.identifier.startswith(self.nationality)
            and len(self.identifier) > 2
        ):
            bad.append(
                f"{self.scheme} identifier must be the nationality then the number,"
                " capitals and digits, at most 35"
            )
        if bad:
            raise PersonError(bad)


def read_persons(text: str) -> dict[str, PersonIdentity]:
    """The persons file (CSV, UTF-8, header `COLUMNS`): beneficial owner id -> identity.
    A CONCAT row may leave `identifier` empty (it is derived); one that gives it must
    give the derived code. Every bad line is named (`PersonError`), none skipped: a
    report must not find a person missing because a line was malformed."""
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or tuple(c.strip() for c in rows[0]) != COLUMNS:
        raise PersonError([f"the first line must be the header {','.join(COLUMNS)}"])
    out: dict[str, PersonIdentity] = {}
    seen: set[str] = set()
    bad: list[str] = []
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(COLUMNS):
            bad.append(f"line {n}: {len(row)} fields, not {len(COLUMNS)}")
            continue
        owner, first, surname, born, nationality, scheme, identifier = (c.strip() for c in row)
        if not owner:
            bad.append(f"line {n}: no owner_id")
            continue
        if owner in seen:
            bad.append(f"line {n}: owner {owner} appears twice")
            continue
        seen.add(owner)
        try:
            if not _DAY.fullmatch(born):  # fromisoformat takes 19700506 and 1970-W10-3 too
                raise ValueError(born)
            birth = date.fromisoformat(born)
        except ValueError:
            bad.append(f"line {n} (owner {owner}): birth_date is not YYYY-MM-DD")
            continue
        if scheme == CONCAT and not identifier:
            try:
                identifier = concat_code(nationality, birth, first, surname)
            except ValueError as exc:
                bad.append(f"line {n} (owner {owner}): no CONCAT code: {exc}")
                continue
        try:
            out[owner] = PersonIdentity(first, surname, birth, nationality, scheme, identifier)
        except PersonError as exc:
            bad += [f"line {n} (owner {owner}): {p}" for p in exc.problems]
    if bad:
        raise PersonError(bad)
    return out
