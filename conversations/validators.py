"""Checks for what people type: names, phone numbers, email addresses, postcodes, questions.

Each check returns the normalised value, or a `Refusal` naming the catalogue text that explains
what is wrong. None of them raises on any input.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from conversations.model import Area


@dataclass(frozen=True)
class Refusal:
    reason: str
    params: dict[str, str] = field(default_factory=dict)


def fold_spaces(text: str) -> str:
    return " ".join(text.split())


_INVISIBLE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}
# Apostrophes as typed on phones: ASCII, right single quotation mark, modifier letter.
_NAME_PUNCTUATION = set(" -'.\u2019\u02bc")
_LINK = re.compile(r"(https?:|www\.|://|@|\.(com|fr|net|org|io)\b)", re.IGNORECASE)
_ZERO_WIDTH_JOINER = "\u200d"


def _has_invisible(text: str, allowed: str = "") -> bool:
    return any(
        unicodedata.category(char) in _INVISIBLE_CATEGORIES and char not in allowed for char in text
    )


def check_name(raw: str, max_length: int) -> str | Refusal:
    """Return a first or last name, trimmed with inner spaces folded, or why it is refused."""
    text = fold_spaces(unicodedata.normalize("NFC", raw))
    if not text:
        return Refusal("refusal.name.empty")
    if len(text) > max_length:
        return Refusal("refusal.name.too_long", {"max": str(max_length)})
    if _has_invisible(text):
        return Refusal("refusal.invisible")
    if _LINK.search(text):
        return Refusal("refusal.name.link")
    if any(char.isdigit() for char in text):
        return Refusal("refusal.name.digits")
    if not any(unicodedata.category(char).startswith("L") for char in text):
        return Refusal("refusal.name.no_letters")
    for char in text:
        if not (unicodedata.category(char)[0] in "LM" or char in _NAME_PUNCTUATION):
            return Refusal("refusal.name.character", {"character": char})
    return text


def check_question(raw: str, max_length: int) -> str | Refusal:
    """Return the question for the candidate, trimmed, or why it is refused."""
    text = unicodedata.normalize("NFC", raw).strip()
    if not text:
        return Refusal("refusal.question.empty")
    if len(text) > max_length:
        return Refusal(
            "refusal.question.too_long", {"max": str(max_length), "length": str(len(text))}
        )
    # The joiner is kept: emoji such as families and flags are built with it.
    if _has_invisible(text.replace("\n", "").replace("\t", ""), allowed=_ZERO_WIDTH_JOINER):
        return Refusal("refusal.invisible")
    return text


# Overseas numbers are often written the national way ("0692 …"), which region FR rejects.
_OVERSEAS_REGIONS = ("RE", "GP", "MQ", "GF", "YT", "PM", "BL", "MF", "NC", "PF", "WF")
_PHONE_MAX_LENGTH = 40


def check_phone(raw: str) -> str | Refusal:
    """Return a phone number in E.164 form, or why it is refused."""
    text = raw.strip()
    if not text or len(text) > _PHONE_MAX_LENGTH or _has_invisible(text):
        return Refusal("refusal.phone.invalid")
    regions = ("FR",) if text.startswith(("+", "00")) else ("FR", *_OVERSEAS_REGIONS)
    for region in regions:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            return Refusal("refusal.phone.invalid")
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Refusal("refusal.phone.invalid")


def check_shared_phone(raw: str) -> str | Refusal:
    """Return the E.164 form of a number shared by the platform, which may lack its '+'."""
    text = raw.strip()
    return check_phone(text if text.startswith("+") else f"+{text}")


def display_phone(e164: str) -> str:
    number = phonenumbers.parse(e164)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


_EMAIL_MAX_LENGTH = 254
COMMON_DOMAINS = (
    "gmail.com", "hotmail.com", "hotmail.fr", "yahoo.fr", "yahoo.com", "orange.fr",
    "wanadoo.fr", "free.fr", "sfr.fr", "laposte.net", "outlook.com", "outlook.fr", "live.fr",
    "live.com", "icloud.com", "me.com", "neuf.fr", "bbox.fr", "gmx.fr", "aol.com", "msn.com",
    "protonmail.com", "proton.me", "numericable.fr", "club-internet.fr",
)  # fmt: skip


@dataclass(frozen=True)
class EmailAddress:
    address: str
    # A likely intended address when the domain looks like a typo of a common one.
    suggestion: str | None = None


def check_email(raw: str, check_deliverability: bool) -> EmailAddress | Refusal:
    """Return a normalised email address with a possible spelling fix, or why it is refused."""
    text = raw.strip()
    if not text or len(text) > _EMAIL_MAX_LENGTH or _has_invisible(text):
        return Refusal("refusal.email.invalid")
    try:
        result = validate_email(text, check_deliverability=check_deliverability)
    except EmailNotValidError:
        return Refusal("refusal.email.invalid")
    address: str = result.normalized
    return EmailAddress(address, suggest_address(address))


def suggest_address(address: str) -> str | None:
    local, _, domain = address.rpartition("@")
    fixed = suggest_domain(domain)
    return f"{local}@{fixed}" if fixed else None


def same_address(first: str, second: str) -> bool:
    return first.casefold() == second.casefold()


def suggest_domain(domain: str) -> str | None:
    """Return the common domain this one is one typo away from, if there is exactly one."""
    domain = domain.lower()
    if domain in COMMON_DOMAINS:
        return None
    close = [known for known in COMMON_DOMAINS if _one_edit_apart(domain, known)]
    return close[0] if len(close) == 1 else None


def _one_edit_apart(first: str, second: str) -> bool:
    """Whether one insertion, deletion, substitution or swap of neighbours makes them equal."""
    if abs(len(first) - len(second)) > 1 or first == second:
        return False
    if len(first) == len(second):
        diffs = [i for i, (a, b) in enumerate(zip(first, second, strict=True)) if a != b]
        if len(diffs) == 1:
            return True
        i = diffs[0]
        return diffs == [i, i + 1] and first[i] == second[i + 1] and first[i + 1] == second[i]
    shorter, longer = sorted((first, second), key=len)
    return any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))


@dataclass(frozen=True)
class Postcode:
    code: str
    departement: str
    area: Area


_ILE_DE_FRANCE = {"77", "78", "91", "92", "93", "94", "95"}
_OVERSEAS_PREFIXES = {"971", "972", "973", "974", "975", "976", "986", "987", "988"}


def check_postcode(raw: str) -> Postcode | Refusal:
    """Return a French postcode with its département and area class, or why it is refused."""
    code = "".join(raw.split())
    if not re.fullmatch(r"[0-9]{5}", code):
        return Refusal("refusal.postcode.format")
    prefix = code[:2]
    if prefix == "20":
        # Corse-du-Sud's postcodes are 200xx and 201xx, Haute-Corse's 202xx to 206xx.
        return Postcode(code, "2A" if code < "20200" else "2B", Area.CORSICA)
    if "01" <= prefix <= "95":
        if prefix == "75":
            area = Area.PARIS
        elif prefix in _ILE_DE_FRANCE:
            area = Area.ILE_DE_FRANCE
        else:
            area = Area.PROVINCE
        return Postcode(code, prefix, area)
    if code[:3] in _OVERSEAS_PREFIXES:
        return Postcode(code, code[:3], Area.OVERSEAS)
    return Refusal("refusal.postcode.not_france")
