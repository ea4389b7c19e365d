"""Amounts of money as people type and read them, held as whole cents: never a float.

`85,50 €`, `85.50`, `85 €`, `€85.50`, `1 234,56 €` (with any kind of space between thousands)
all read as cents; a negative, zero, absurd amount or one with more than two decimals is refused
with the catalogue text that says why.
"""

from __future__ import annotations

import re

from conversations.validators import Refusal

# The spaces phones and French typography put between thousands or before the euro sign.
_SPACES = re.compile(r"[\s\u00a0\u202f\u2009\u2007]+")
_CURRENCY = r"(?:€|eur|euros?)"
_LEADING = re.compile(rf"^{_CURRENCY}\s*", re.IGNORECASE)
_TRAILING = re.compile(rf"\s*{_CURRENCY}$", re.IGNORECASE)
_NUMBER = re.compile(r"(\d{1,3}(?: \d{3})+|\d+)(?:[.,](\d+))?")
_MINUS = ("-", "\u2212")
# More digits than any real amount: refused before Python turns a huge string into an int.
_MAX_DIGITS = 12


def parse_amount(text: str, maximum_cents: int) -> int | Refusal:
    """The amount in cents, or why it is refused; `maximum_cents` bounds an absurd amount."""
    value = _SPACES.sub(" ", text).strip()
    value = _TRAILING.sub("", _LEADING.sub("", value)).strip()
    if value.startswith(_MINUS):
        return Refusal("money.negative")
    match = _NUMBER.fullmatch(value)
    if match is None:
        return Refusal("money.unreadable")
    whole, decimals = match[1].replace(" ", ""), match[2] or ""
    if len(decimals) > 2:
        return Refusal("money.decimals")
    too_large = Refusal("money.too_large", {"max": format_amount(maximum_cents, "fr")})
    if len(whole) > _MAX_DIGITS:
        return too_large
    cents = int(whole) * 100 + int(decimals.ljust(2, "0"))
    if cents == 0:
        return Refusal("money.zero")
    return too_large if cents > maximum_cents else cents


def format_amount(cents: int, language: str) -> str:
    """`1 234,56 €` in French (narrow spaces between thousands, a no-break space before €),
    `€1234.56` otherwise."""
    euros, rest = divmod(cents, 100)
    if language == "fr":
        grouped = f"{euros:,}".replace(",", "\u202f")
        return f"{grouped},{rest:02d}\u00a0€"
    return f"€{euros}.{rest:02d}"


def csv_amount(cents: int) -> str:
    """`1234,56`: what a French spreadsheet reads as a number."""
    euros, rest = divmod(cents, 100)
    return f"{euros},{rest:02d}"
