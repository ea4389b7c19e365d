"""Checks for what people type: names, phone numbers, email addresses, postcodes, questions.

Each check returns the normalised value, or a `Refusal` naming the catalogue text that explains
what is wrong. None of them raises on any input.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections.abc import Iterable
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
# Letters and symbols that draw nothing: a name made of them looks empty, so they count as
# invisible (Hangul fillers are letters to Unicode; the Braille blank is a symbol).
_BLANK_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
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
    if _has_invisible(text) or not _BLANK_CHARACTERS.isdisjoint(text):
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


_PHONE_MAX_LENGTH = 40
# Overseas départements share metropolitan France's national writing ("0596 …"), and some of
# their prefixes are also valid metropolitan numbers for the library (0596 would become +33):
# a national number with one of these prefixes belongs to the regions listed, tried in order.
# Saint-Barthélemy and Saint-Martin share Guadeloupe's +590, Mayotte shares La Réunion's +262.
_OVERSEAS_PREFIXES_NATIONAL = {
    "0590": ("GP", "BL", "MF"),
    "0690": ("GP", "BL", "MF"),
    "0691": ("GP", "BL", "MF"),
    "07090": ("GP", "BL", "MF"),
    "0596": ("MQ",),
    "0696": ("MQ",),
    "0697": ("MQ",),
    "07091": ("MQ",),
    "0594": ("GF",),
    "0694": ("GF",),
    "07093": ("GF", "YT"),
    "0262": ("RE",),
    "0263": ("RE",),
    "0692": ("RE",),
    "0693": ("RE",),
    "07092": ("RE",),
    "0269": ("YT",),
    "0639": ("YT",),
}
# Territories with their own short numbering and no trunk "0" (optional in Saint-Pierre-et-
# Miquelon): a number valid in exactly one of them is theirs. The library accepts almost any
# six digits for Saint-Pierre-et-Miquelon; only the ranges in service there (4x fixed and
# mobile, 5x mobile) and in Wallis-et-Futuna (72 fixed, 82 and 83 mobile) are counted, so that
# New Caledonia's other numbers resolve. Those ranges are New Caledonian numbers too.
_SHORT_NUMBERING_REGIONS = ("PM", "WF", "PF", "NC")
_RANGES_IN_SERVICE = {"PM": ("4", "5"), "WF": ("72", "82", "83")}


def phone_characters(raw: str) -> str:
    """The characters of a pasted phone number, without what does not show.

    Contacts apps wrap numbers in direction marks (U+202A…U+202C, U+2066…U+2069) and group
    digits with no-break spaces (U+00A0, U+202F); compatibility forms such as full-width digits
    become ASCII. What is left is digits and the usual punctuation, or something to refuse.
    """
    text = unicodedata.normalize("NFKC", raw)
    return "".join(
        char
        for char in text
        if not (char.isspace() or unicodedata.category(char) in ("Cf", "Zs", "Zl", "Zp"))
    )


def _parse_phone(text: str, region: str) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    national = phonenumbers.national_significant_number(number)
    if not national.startswith(_RANGES_IN_SERVICE.get(region, "")):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_phone(raw: str) -> str | Refusal:
    """Return a phone number in E.164 form, or why it is refused."""
    text = phone_characters(raw)
    if not text or len(text) > _PHONE_MAX_LENGTH or _has_invisible(text):
        return Refusal("refusal.phone.invalid")
    if text.startswith(("+", "00")):
        return _parse_phone(text, "FR") or Refusal("refusal.phone.invalid")
    digits = "".join(char for char in text if char.isdigit())
    for prefix, regions in _OVERSEAS_PREFIXES_NATIONAL.items():
        if digits.startswith(prefix):
            numbers = (_parse_phone(text, region) for region in regions)
            return next((e164 for e164 in numbers if e164), Refusal("refusal.phone.invalid"))
    metropolitan = _parse_phone(text, "FR")
    if metropolitan:
        return metropolitan
    found = {e164 for region in _SHORT_NUMBERING_REGIONS if (e164 := _parse_phone(text, region))}
    if len(found) > 1:
        # 72 12 34 is a number in Wallis-et-Futuna and in New Caledonia: only the person knows.
        # (Written with its country code, a number never comes here.)
        return Refusal("refusal.phone.ambiguous")
    return found.pop() if found else Refusal("refusal.phone.invalid")


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


# Providers that deliver local+tag@ to local@ (and Gmail ignores dots too): one mailbox has
# many spellings there. `*` stands for any ending, as in hotmail.fr and hotmail.co.uk.
TAG_IGNORING_PROVIDERS = (
    "gmail.com", "googlemail.com", "outlook.*", "hotmail.*", "live.*", "msn.com", "icloud.com",
    "me.com", "mac.com", "proton.me", "protonmail.com", "protonmail.ch", "pm.me", "fastmail.com",
)  # fmt: skip
_GMAIL_DOMAINS = ("gmail.com", "googlemail.com")


def address_key(address: str, providers: Iterable[str] = TAG_IGNORING_PROVIDERS) -> str:
    """The mailbox an address reaches, for comparing addresses: two spellings of one mailbox
    give one key. Unicode case is folded everywhere; for `providers`, a `+tag` is dropped, and
    Gmail's dots too, googlemail.com being gmail.com."""
    local, _, domain = address.strip().casefold().rpartition("@")
    if any(fnmatch.fnmatchcase(domain, provider.casefold()) for provider in providers):
        local = local.partition("+")[0]
        if domain in _GMAIL_DOMAINS:
            local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}"


def same_address(
    first: str, second: str, providers: Iterable[str] = TAG_IGNORING_PROVIDERS
) -> bool:
    """Whether two addresses reach the same mailbox."""
    return address_key(first, providers) == address_key(second, providers)


# Mailboxes of a role, not of a person (RFC 2142 and common practice): an invitation there
# reaches whoever runs the domain, who never asked for it.
ROLE_LOCAL_PARTS = frozenset(
    {
        "postmaster", "abuse", "noreply", "no-reply", "donotreply", "do-not-reply",
        "hostmaster", "webmaster", "admin", "administrator", "root", "mailer-daemon",
        "security",
    }
)  # fmt: skip


def is_role_or_campaign_address(
    address: str,
    campaign: Iterable[str],
    providers: Iterable[str] = TAG_IGNORING_PROVIDERS,
) -> bool:
    """Whether the address is a role mailbox, or the campaign's own (`campaign` holds its
    domains and addresses): neither is a friend to invite."""
    key = address_key(address, providers)
    local, _, domain = key.rpartition("@")
    if local.partition("+")[0] in ROLE_LOCAL_PARTS:
        return True
    for own in campaign:
        own = own.strip().casefold()
        if own == domain or domain.endswith(f".{own}") or ("@" in own and own == key):
            return True
    return False


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
