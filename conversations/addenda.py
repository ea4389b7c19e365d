"""A draw's public addenda: each replacement of a winner, appended after the certificate.

Addendum n names the hash of addendum n-1 (`prev`; for the first, the certificate's hash), the
winner replaced, the reason's category, and the reserve promoted: always the next reserve in the
certificate's order, or none when none is left.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from conversations.ledger import record_hash


class ReplacementReason(StrEnum):
    DECLINED = "declined"
    EXPIRED = "expired"
    ERASED = "erased"
    UNREACHABLE = "unreachable"
    WITHDREW = "withdrew"
    INELIGIBLE = "ineligible"


# The reasons an admin may give to /remplacer; the others come from the winner or the clock.
BY_HAND = (ReplacementReason.UNREACHABLE, ReplacementReason.WITHDREW, ReplacementReason.INELIGIBLE)


def certificate_hash(certificate: Mapping[str, Any]) -> str:
    return record_hash(certificate)


def next_addendum(
    certificate: Mapping[str, Any],
    addenda: Sequence[Mapping[str, Any]],
    replaced: str,
    reason: ReplacementReason,
    promoted: str | None,
    at: datetime,
) -> dict[str, Any]:
    prev = record_hash(addenda[-1]) if addenda else certificate_hash(certificate)
    return {
        "seq": len(addenda) + 1,
        "prev": prev,
        "at": at.isoformat(),
        "replaced": replaced,
        "reason": str(reason),
        "promoted": promoted,
    }


def standing(
    certificate: Mapping[str, Any], addenda: Sequence[Mapping[str, Any]]
) -> tuple[list[str], list[str]]:
    """The winners and the reserves still waiting, once the addenda are applied."""
    winners = list(certificate.get("winners", []))
    waiting = list(certificate.get("reserves", []))
    for addendum in addenda:
        if addendum.get("replaced") in winners:
            winners.remove(addendum["replaced"])
        if waiting and addendum.get("promoted") == waiting[0]:
            winners.append(waiting.pop(0))
    return winners, waiting


def verify_addenda(
    certificate: Mapping[str, Any], addenda: Sequence[Mapping[str, Any]]
) -> list[str]:
    """Check the chain and that each replacement promotes the next reserve, in order."""
    problems = []
    prev = certificate_hash(certificate)
    for position, addendum in enumerate(addenda, 1):
        name = f"addendum {position}"
        if addendum.get("seq") != position:
            problems.append(f"{name}: numbered {addendum.get('seq')} (one removed or moved)")
        if addendum.get("prev") != prev:
            problems.append(f"{name}: not chained to the certificate and the addenda before it")
        winners, waiting = standing(certificate, addenda[: position - 1])
        if addendum.get("replaced") not in winners:
            problems.append(f"{name}: {addendum.get('replaced')} is not a winner then")
        expected = waiting[0] if waiting else None
        if addendum.get("promoted") != expected:
            problems.append(f"{name}: promotes {addendum.get('promoted')}, the next is {expected}")
        if addendum.get("reason") not in set(ReplacementReason):
            problems.append(f"{name}: unknown reason {addendum.get('reason')!r}")
        prev = record_hash(addendum)
    return problems
