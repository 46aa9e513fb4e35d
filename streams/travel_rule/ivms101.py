"""IVMS-101 validation as TRISA's validator enforces it, with findings instead of errors.

The payload is IVMS-101 JSON as TRISA's `encoding/json` fixtures write it (the
interVASP field names: `nameIdentifier`, `geographicAddress`, `legalPersonName`, ...).
TRISA's opt-in "rekeying" of other spellings (`nameIdentifiers`, `street`, `dob`) is not
done: such a key is an `UNKNOWN_FIELD` finding, so a payload is never read as meaning
what its sender may not have meant. Every finding is collected (TRISA stops at a legal
person's first); none raises. Pure: "in the past" is relative to `as_of`, the request's
own time, never the wall clock.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any

from schemas.events.accounts import lei_checksum_ok


class Code(StrEnum):
    MISSING_FIELD = "MISSING_FIELD"
    WRONG_TYPE = "WRONG_TYPE"
    UNKNOWN_FIELD = "UNKNOWN_FIELD"
    NO_PERSON = "NO_PERSON"
    NO_LEGAL_NAME = "NO_LEGAL_NAME"
    BAD_NAME_TYPE = "BAD_NAME_TYPE"
    NAME_TOO_LONG = "NAME_TOO_LONG"
    BAD_NATIONAL_ID_TYPE = "BAD_NATIONAL_ID_TYPE"
    NATIONAL_ID_TOO_LONG = "NATIONAL_ID_TOO_LONG"
    COUNTRY_OF_ISSUE_FOR_LEGAL_PERSON = "COUNTRY_OF_ISSUE_FOR_LEGAL_PERSON"
    BAD_LEI = "BAD_LEI"
    NO_REGISTRATION_AUTHORITY = "NO_REGISTRATION_AUTHORITY"
    BAD_REGISTRATION_AUTHORITY = "BAD_REGISTRATION_AUTHORITY"
    REGISTRATION_AUTHORITY_WITH_LEI = "REGISTRATION_AUTHORITY_WITH_LEI"
    BAD_COUNTRY = "BAD_COUNTRY"
    BAD_ADDRESS_TYPE = "BAD_ADDRESS_TYPE"
    INCOMPLETE_ADDRESS = "INCOMPLETE_ADDRESS"
    BAD_DATE_OF_BIRTH = "BAD_DATE_OF_BIRTH"
    DATE_OF_BIRTH_NOT_PAST = "DATE_OF_BIRTH_NOT_PAST"
    TEXT_TOO_LONG = "TEXT_TOO_LONG"


@dataclass(frozen=True, order=True)
class Finding:
    """One broken constraint: where (a JSON path), which rule, and why in words."""

    path: str
    code: Code
    message: str

    def line(self) -> str:
        return f"{self.path or '$'}: {self.code}: {self.message}"


ISO3166_ALPHA2: frozenset[str] = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
    """.split()
)
"""The 249 officially assigned ISO 3166-1 alpha-2 codes."""

NATURAL_NAME_TYPES = frozenset({"ALIA", "BIRT", "MAID", "LEGL", "MISC"})
LEGAL_NAME_TYPES = frozenset({"LEGL", "SHRT", "TRAD"})
NATIONAL_ID_TYPES = frozenset(
    {"ARNU", "CCPT", "RAID", "DRLC", "FIIN", "TXID", "SOCS", "IDCD", "LEIX", "MISC"}
)
LEGAL_NATIONAL_ID_TYPES = frozenset({"RAID", "MISC", "LEIX", "TXID"})
ADDRESS_TYPES = frozenset({"HOME", "BIZZ", "GEOG"})
REGISTRATION_AUTHORITY = re.compile(r"RA\d{6}")
LEI_FORMAT = re.compile(r"[A-Z0-9]{18}[0-9]{2}")
ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
MAX_NAME = 100
MAX_NATIONAL_ID = 35
MAX_CUSTOMER_ID = 50
MAX_PLACE_OF_BIRTH = 70
MAX_ADDRESS_LINES = 7

_ADDRESS_FIELDS = frozenset(
    {
        "addressType",
        "department",
        "subDepartment",
        "streetName",
        "buildingNumber",
        "buildingName",
        "floor",
        "postBox",
        "room",
        "postCode",
        "townName",
        "townLocationName",
        "districtName",
        "countrySubDivision",
        "addressLine",
        "country",
    }
)
_NATIONAL_ID_FIELDS = frozenset(
    {"nationalIdentifier", "nationalIdentifierType", "countryOfIssue", "registrationAuthority"}
)
_NATURAL_FIELDS = frozenset(
    {
        "name",
        "geographicAddress",
        "nationalIdentification",
        "customerIdentification",
        "dateAndPlaceOfBirth",
        "countryOfResidence",
    }
)
_LEGAL_FIELDS = frozenset(
    {
        "name",
        "geographicAddress",
        "customerNumber",
        "nationalIdentification",
        "countryOfRegistration",
    }
)
_NATURAL_NAME_FIELDS = frozenset(
    {"nameIdentifier", "localNameIdentifier", "phoneticNameIdentifier"}
)
_LEGAL_NAME_FIELDS = frozenset({"nameIdentifier", "localNameIdentifier", "phoneticNameIdentifier"})
_NATURAL_NAME_ID_FIELDS = frozenset(
    {"primaryIdentifier", "secondaryIdentifier", "nameIdentifierType"}
)
_LEGAL_NAME_ID_FIELDS = frozenset({"legalPersonName", "legalPersonNameIdentifierType"})
_PAYLOAD_FIELDS = frozenset(
    {"originator", "beneficiary", "originatingVASP", "beneficiaryVASP", "transferPath",
     "payloadMetadata"}
)  # fmt: skip


class Kind(StrEnum):
    """What a JSON document holds (the CLI validates any of them)."""

    IDENTITY_PAYLOAD = "identity-payload"
    PERSON = "person"
    NATURAL_PERSON = "natural-person"
    LEGAL_PERSON = "legal-person"
    ADDRESS = "address"
    NATIONAL_IDENTIFICATION = "national-identification"


def guess_kind(doc: Any) -> Kind | None:
    """The kind a document's top-level keys say it is; None if they say nothing."""
    if not isinstance(doc, dict):
        return None
    keys = set(doc)
    if keys & {"originator", "beneficiary", "originatingVASP", "beneficiaryVASP"}:
        return Kind.IDENTITY_PAYLOAD
    if keys & {"naturalPerson", "legalPerson"}:
        return Kind.PERSON
    if "nationalIdentifier" in keys:
        return Kind.NATIONAL_IDENTIFICATION
    if "name" in keys:
        ids = doc["name"].get("nameIdentifier") if isinstance(doc["name"], dict) else None
        first = ids[0] if isinstance(ids, list) and ids and isinstance(ids[0], dict) else {}
        if "legalPersonName" in first or keys & {"countryOfRegistration", "customerNumber"}:
            return Kind.LEGAL_PERSON
        return Kind.NATURAL_PERSON
    if keys & _ADDRESS_FIELDS:
        return Kind.ADDRESS
    return None


class Ivms101Validator:
    """Validates IVMS-101 JSON; `validate` returns the findings, sorted by path (empty:
    valid). `as_of`: the day a date of birth must be before (the request's own date).
    `self_hosted`: the payload of a transfer to a self-hosted address, which has no
    beneficiary VASP: one absent is no finding there (one given is still checked). The
    originator's provider holds the beneficiary's information itself (TFR art. 14(5));
    requiring a beneficiary VASP left such a transfer only REJECT or a made-up VASP
    (session 25's demo had to name its own firm)."""

    def __init__(self, as_of: date, *, self_hosted: bool = False) -> None:
        self.as_of = as_of
        self.self_hosted = self_hosted

    def validate(self, doc: Any, kind: Kind = Kind.IDENTITY_PAYLOAD) -> list[Finding]:
        out: list[Finding] = []
        check = {
            Kind.IDENTITY_PAYLOAD: self._payload,
            Kind.PERSON: self._person,
            Kind.NATURAL_PERSON: self._natural,
            Kind.LEGAL_PERSON: self._legal,
            Kind.ADDRESS: self._address,
            Kind.NATIONAL_IDENTIFICATION: self._national_id,
        }[kind]
        check(doc, "", out)
        return sorted(out)

    # -- helpers ---------------------------------------------------------------------

    @staticmethod
    def _obj(value: Any, path: str, out: list[Finding], known: frozenset[str]) -> bool:
        """Whether `value` is an object; its unknown keys are findings."""
        if not isinstance(value, Mapping):
            out.append(Finding(path, Code.WRONG_TYPE, "expected an object"))
            return False
        for key in sorted(k for k in value if k not in known):
            out.append(Finding(_join(path, str(key)), Code.UNKNOWN_FIELD, "not an IVMS-101 field"))
        return True

    @staticmethod
    def _text(
        value: Mapping[str, Any], key: str, path: str, out: list[Finding], *, required: bool
    ) -> str | None:
        """The string at `key` (None if absent or empty); a non-string is a finding."""
        found = value.get(key)
        where = _join(path, key)
        if found is None or found == "":
            if required:
                out.append(Finding(where, Code.MISSING_FIELD, "required"))
            return None
        if not isinstance(found, str):
            out.append(Finding(where, Code.WRONG_TYPE, "expected a string"))
            return None
        return found

    @staticmethod
    def _list(
        value: Mapping[str, Any], key: str, path: str, out: list[Finding]
    ) -> list[tuple[str, Any]]:
        """(path, item) of the list at `key`; absent is empty, a non-list a finding."""
        found = value.get(key)
        if found is None:
            return []
        if not isinstance(found, list):
            out.append(Finding(_join(path, key), Code.WRONG_TYPE, "expected a list"))
            return []
        return [(f"{_join(path, key)}[{i}]", item) for i, item in enumerate(found)]

    @staticmethod
    def _country(value: str | None, where: str, out: list[Finding], *, xx: bool = False) -> None:
        if value is not None and value not in ISO3166_ALPHA2 and not (xx and value == "XX"):
            out.append(
                Finding(where, Code.BAD_COUNTRY, f"{value!r} is not an ISO 3166-1 alpha-2 code")
            )

    # -- the payload -----------------------------------------------------------------

    def _payload(self, doc: Any, path: str, out: list[Finding]) -> None:
        if not self._obj(doc, path, out, _PAYLOAD_FIELDS):
            return
        for role, persons_key in (("originator", "originatorPersons"),
                                  ("beneficiary", "beneficiaryPersons")):  # fmt: skip
            where = _join(path, role)
            party = doc.get(role)
            if party is None:
                out.append(Finding(where, Code.MISSING_FIELD, "required"))
                continue
            if not self._obj(party, where, out, frozenset({persons_key, "accountNumber"})):
                continue
            persons = self._list(party, persons_key, where, out)
            if not persons:
                out.append(
                    Finding(_join(where, persons_key), Code.NO_PERSON, "at least one person")
                )
            for item_path, person in persons:
                self._person(person, item_path, out)
            for item_path, number in self._list(party, "accountNumber", where, out):
                if not isinstance(number, str):
                    out.append(Finding(item_path, Code.WRONG_TYPE, "expected a string"))
                else:
                    _at_most(number, MAX_NAME, item_path, out)
        for role in ("originatingVASP", "beneficiaryVASP"):
            where = _join(path, role)
            vasp = doc.get(role)
            if vasp is None:
                if not (self.self_hosted and role == "beneficiaryVASP"):
                    out.append(Finding(where, Code.MISSING_FIELD, "required"))
                continue
            if not self._obj(vasp, where, out, frozenset({role})):
                continue
            if vasp.get(role) is None:  # `{}` or a null person identifies no provider
                out.append(Finding(_join(where, role), Code.MISSING_FIELD, "required"))
                continue
            self._person(vasp[role], _join(where, role), out)

    def _person(self, doc: Any, path: str, out: list[Finding]) -> None:
        if not self._obj(doc, path, out, frozenset({"naturalPerson", "legalPerson"})):
            return
        natural, legal = doc.get("naturalPerson"), doc.get("legalPerson")
        if natural is None and legal is None:
            out.append(Finding(path, Code.NO_PERSON, "neither naturalPerson nor legalPerson"))
        if natural is not None:
            self._natural(natural, _join(path, "naturalPerson"), out)
        if legal is not None:
            self._legal(legal, _join(path, "legalPerson"), out)

    # -- persons ---------------------------------------------------------------------

    def _natural(self, doc: Any, path: str, out: list[Finding]) -> None:
        if not self._obj(doc, path, out, _NATURAL_FIELDS):
            return
        self._names(doc, path, out, legal=False)
        for item_path, address in self._list(doc, "geographicAddress", path, out):
            self._address(address, item_path, out)
        if doc.get("nationalIdentification") is not None:
            self._national_id(doc["nationalIdentification"], _join(path, "nationalIdentification"), out)  # fmt: skip
        customer = self._text(doc, "customerIdentification", path, out, required=False)
        _at_most(customer, MAX_CUSTOMER_ID, _join(path, "customerIdentification"), out)
        birth = doc.get("dateAndPlaceOfBirth")
        if birth is not None:
            self._birth(birth, _join(path, "dateAndPlaceOfBirth"), out)
        residence = self._text(doc, "countryOfResidence", path, out, required=False)
        self._country(residence, _join(path, "countryOfResidence"), out, xx=True)

    def _legal(self, doc: Any, path: str, out: list[Finding]) -> None:
        if not self._obj(doc, path, out, _LEGAL_FIELDS):
            return
        self._names(doc, path, out, legal=True)
        for item_path, address in self._list(doc, "geographicAddress", path, out):
            self._address(address, item_path, out)
        customer = self._text(doc, "customerNumber", path, out, required=False)
        _at_most(customer, MAX_CUSTOMER_ID, _join(path, "customerNumber"), out)
        national = doc.get("nationalIdentification")
        if national is not None:
            where = _join(path, "nationalIdentification")
            if self._national_id(national, where, out):
                self._legal_national_id(national, where, out)
        registration = self._text(doc, "countryOfRegistration", path, out, required=False)
        self._country(registration, _join(path, "countryOfRegistration"), out)

    def _names(self, doc: Mapping[str, Any], path: str, out: list[Finding], *, legal: bool) -> None:
        where = _join(path, "name")
        name = doc.get("name")
        if name is None:
            out.append(Finding(where, Code.MISSING_FIELD, "required"))
            return
        if not self._obj(name, where, out, _LEGAL_NAME_FIELDS if legal else _NATURAL_NAME_FIELDS):
            return
        legal_names = 0
        for key in ("nameIdentifier", "localNameIdentifier", "phoneticNameIdentifier"):
            for item_path, ident in self._list(name, key, where, out):
                legal_names += key == "nameIdentifier" and self._name_id(
                    ident, item_path, out, legal=legal
                )
        if legal_names == 0:
            out.append(
                Finding(
                    _join(where, "nameIdentifier"),
                    Code.NO_LEGAL_NAME,
                    "at least one name identifier of type LEGL is required",
                )
            )

    def _name_id(self, doc: Any, path: str, out: list[Finding], *, legal: bool) -> bool:
        """Check one name identifier; whether it is a LEGL one."""
        known = _LEGAL_NAME_ID_FIELDS if legal else _NATURAL_NAME_ID_FIELDS
        if not self._obj(doc, path, out, known):
            return False
        texts = ("legalPersonName",) if legal else ("primaryIdentifier", "secondaryIdentifier")
        for i, key in enumerate(texts):
            text = self._text(doc, key, path, out, required=i == 0)
            if text is not None and i == 0 and not text.strip():
                out.append(Finding(_join(path, key), Code.MISSING_FIELD, "blank"))
            _at_most(text, MAX_NAME, _join(path, key), out, Code.NAME_TOO_LONG)
        type_key = "legalPersonNameIdentifierType" if legal else "nameIdentifierType"
        kind = self._text(doc, type_key, path, out, required=True)
        allowed = LEGAL_NAME_TYPES if legal else NATURAL_NAME_TYPES
        if kind is not None and kind not in allowed:
            out.append(
                Finding(
                    _join(path, type_key),
                    Code.BAD_NAME_TYPE,
                    f"{kind!r} is not one of {', '.join(sorted(allowed))}",
                )
            )
        return kind == "LEGL"

    # -- parts -----------------------------------------------------------------------

    def _address(self, doc: Any, path: str, out: list[Finding]) -> None:
        if not self._obj(doc, path, out, _ADDRESS_FIELDS):
            return
        kind = self._text(doc, "addressType", path, out, required=True)
        if kind is not None and kind not in ADDRESS_TYPES:
            out.append(
                Finding(
                    _join(path, "addressType"),
                    Code.BAD_ADDRESS_TYPE,
                    f"{kind!r} is not one of {', '.join(sorted(ADDRESS_TYPES))}",
                )
            )
        lines = self._list(doc, "addressLine", path, out)
        if len(lines) > MAX_ADDRESS_LINES:
            out.append(
                Finding(
                    _join(path, "addressLine"),
                    Code.TEXT_TOO_LONG,
                    f"{len(lines)} lines > {MAX_ADDRESS_LINES}",
                )
            )
        texts = {
            k: self._text(doc, k, path, out, required=False)
            for k in ("streetName", "buildingName", "buildingNumber")
        }
        has_line = any(isinstance(line, str) and line.strip() for _p, line in lines)
        if not has_line and not (
            texts["streetName"] and (texts["buildingName"] or texts["buildingNumber"])
        ):
            out.append(
                Finding(
                    path,
                    Code.INCOMPLETE_ADDRESS,
                    "needs an addressLine, or a streetName with a buildingName or buildingNumber",
                )
            )
        country = self._text(doc, "country", path, out, required=True)
        self._country(country, _join(path, "country"), out)

    def _national_id(self, doc: Any, path: str, out: list[Finding]) -> bool:
        """Check a national identification; whether it was an object to check further."""
        if not self._obj(doc, path, out, _NATIONAL_ID_FIELDS):
            return False
        ident = self._text(doc, "nationalIdentifier", path, out, required=True)
        where = _join(path, "nationalIdentifier")
        _at_most(ident, MAX_NATIONAL_ID, where, out, Code.NATIONAL_ID_TOO_LONG)
        kind = self._text(doc, "nationalIdentifierType", path, out, required=True)
        if kind is not None and kind not in NATIONAL_ID_TYPES:
            out.append(
                Finding(
                    _join(path, "nationalIdentifierType"),
                    Code.BAD_NATIONAL_ID_TYPE,
                    f"{kind!r} is not an IVMS-101 national identifier type",
                )
            )
        if kind == "LEIX" and ident is not None and not _lei_ok(ident):
            out.append(
                Finding(
                    _join(path, "nationalIdentifier"),
                    Code.BAD_LEI,
                    f"{ident!r} is not an ISO 17442 LEI (20 characters, MOD 97-10 check digits)",
                )
            )
        issue = self._text(doc, "countryOfIssue", path, out, required=False)
        self._country(issue, _join(path, "countryOfIssue"), out)
        authority = self._text(doc, "registrationAuthority", path, out, required=False)
        if authority is not None and REGISTRATION_AUTHORITY.fullmatch(authority) is None:
            out.append(
                Finding(
                    _join(path, "registrationAuthority"),
                    Code.BAD_REGISTRATION_AUTHORITY,
                    f"{authority!r} is not a GLEIF registration authority code (RA and 6 digits)",
                )
            )
        return True

    def _legal_national_id(self, doc: Mapping[str, Any], path: str, out: list[Finding]) -> None:
        """What a legal person's national identification must also be (IVMS-101 C7, C9)."""
        kind = doc.get("nationalIdentifierType")
        if isinstance(kind, str) and kind and kind not in LEGAL_NATIONAL_ID_TYPES:
            out.append(
                Finding(
                    _join(path, "nationalIdentifierType"),
                    Code.BAD_NATIONAL_ID_TYPE,
                    f"a legal person's is one of {', '.join(sorted(LEGAL_NATIONAL_ID_TYPES))},"
                    f" not {kind!r}",
                )
            )
        if doc.get("countryOfIssue"):
            out.append(
                Finding(
                    _join(path, "countryOfIssue"),
                    Code.COUNTRY_OF_ISSUE_FOR_LEGAL_PERSON,
                    "a legal person's national identification has no country of issue",
                )
            )
        authority = doc.get("registrationAuthority")
        if kind == "LEIX" and authority:
            out.append(
                Finding(
                    _join(path, "registrationAuthority"),
                    Code.REGISTRATION_AUTHORITY_WITH_LEI,
                    "an LEI names no registration authority",
                )
            )
        if kind != "LEIX" and not authority:
            out.append(
                Finding(
                    _join(path, "registrationAuthority"),
                    Code.NO_REGISTRATION_AUTHORITY,
                    "required unless the identifier is an LEI (LEIX)",
                )
            )

    def _birth(self, doc: Any, path: str, out: list[Finding]) -> None:
        if not self._obj(doc, path, out, frozenset({"dateOfBirth", "placeOfBirth"})):
            return
        text = self._text(doc, "dateOfBirth", path, out, required=True)
        place = self._text(doc, "placeOfBirth", path, out, required=True)
        _at_most(place, MAX_PLACE_OF_BIRTH, _join(path, "placeOfBirth"), out)
        if text is None:
            return
        where = _join(path, "dateOfBirth")
        try:
            # YYYY-MM-DD only: 3.11's fromisoformat also reads the week date 1975-W08-2
            born = date.fromisoformat(text) if ISO_DATE.fullmatch(text) else None
        except ValueError:
            born = None
        if born is None:
            out.append(Finding(where, Code.BAD_DATE_OF_BIRTH, f"{text!r} is not YYYY-MM-DD"))
        elif born >= self.as_of:
            out.append(
                Finding(
                    where,
                    Code.DATE_OF_BIRTH_NOT_PAST,
                    f"{born.isoformat()} is not before {self.as_of.isoformat()}",
                )
            )


def _at_most(
    text: str | None, limit: int, where: str, out: list[Finding], code: Code = Code.TEXT_TOO_LONG
) -> None:
    """A finding if `text` is longer than `limit` characters (None: nothing to check)."""
    if text is not None and len(text) > limit:
        out.append(Finding(where, code, f"{len(text)} > {limit}"))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _lei_ok(value: str) -> bool:
    """ISO 17442: 18 characters (digits, capitals), 2 check digits, MOD 97-10 == 1.

    The check digits catch every change of one character into another of its class (a
    digit for a digit, a letter for a letter); a digit swapped for a letter turns one
    digit of the checked number into two and slips through about once in 97
    (283100RWUNF913WOJT02 with its '8' at index 1 made 'M' still checks)."""
    return LEI_FORMAT.fullmatch(value) is not None and lei_checksum_ok(value)
