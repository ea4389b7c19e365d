"""The draw, as anyone can redo it: order the tickets by HMAC-SHA256(seed, ticket) and take the
first ones as winners, the next ones as reserves, in that order.

Version 1 of the algorithm, exactly:
1. The ticket list is the eligible tickets (ASCII strings), sorted, one per line, each line
   ending with "\\n"; `tickets_sha256` is the SHA-256 of that text, in hexadecimal.
2. The seed is 32 bytes, written in hexadecimal. With a commitment, `commitment` is the SHA-256
   of those 32 bytes, published before entries close.
3. Each ticket's key is HMAC-SHA256(key = seed, message = the ticket's ASCII bytes); tickets are
   ordered by key, bytes compared as unsigned, smallest first.
4. The first `winners` tickets win; the next `reserves` are reserves, in that order.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from conversations.model import ConsentKind, Participant

ALGORITHM = "coffeebot-draw-1: HMAC-SHA256(seed, ticket) ascending"


@dataclass(frozen=True)
class DrawCertificate:
    algorithm: str
    drawn_at: str
    tickets: int
    tickets_sha256: str
    seed: str
    commitment: str | None
    winners: tuple[str, ...]
    reserves: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["winners"], data["reserves"] = list(self.winners), list(self.reserves)
        return data


def why_ineligible(person: Participant) -> str | None:
    """The catalogue key saying why this signup cannot be drawn, or None when it can."""
    entry = person.entry
    if entry is None:
        return "ticket.not_complete" if person.completed_at is None else "ticket.not_confirmed"
    if entry.ticket is None:
        return "ticket.after_closing"
    given = {consent.kind for consent in entry.consents}
    if not {ConsentKind.DRAW, ConsentKind.ADULT} <= given:
        return "ticket.no_consent"
    if entry.excluded_reason:
        return "ticket.excluded"
    return None


def ticket_list(tickets: Iterable[str]) -> str:
    return "".join(f"{ticket}\n" for ticket in sorted(tickets))


def tickets_sha256(tickets: Iterable[str]) -> str:
    return hashlib.sha256(ticket_list(tickets).encode("ascii")).hexdigest()


def commitment_of(seed: bytes) -> str:
    return hashlib.sha256(seed).hexdigest()


def first_drawn(seed: bytes, tickets: Iterable[str], count: int) -> list[str]:
    """The `count` first tickets in the draw's order, without sorting them all."""
    # Keyed once and copied per ticket: hmac.digest would derive the key's pads every time.
    keyed = hmac.new(seed, digestmod=hashlib.sha256)

    def order_key(ticket: str) -> bytes:
        mac = keyed.copy()
        mac.update(ticket.encode("ascii"))
        return mac.digest()

    return heapq.nsmallest(count, tickets, key=order_key)


def draw(
    seed: bytes,
    tickets: Sequence[str],
    winners: int,
    reserves: int,
    at: datetime,
    commitment: str | None = None,
    order: Callable[[bytes, Sequence[str], int], list[str]] = first_drawn,
) -> DrawCertificate:
    """Draw from `tickets`; `order` may compute `first_drawn` faster, never differently."""
    if len(set(tickets)) != len(tickets):
        raise ValueError("a ticket appears twice in the list")
    drawn = order(seed, tickets, winners + reserves)
    return DrawCertificate(
        algorithm=ALGORITHM,
        drawn_at=at.isoformat(),
        tickets=len(tickets),
        tickets_sha256=tickets_sha256(tickets),
        seed=seed.hex(),
        commitment=commitment,
        winners=tuple(drawn[:winners]),
        reserves=tuple(drawn[winners:]),
    )


def verify(certificate: dict[str, Any], tickets: Sequence[str]) -> list[str]:
    """Redo the draw from a certificate and a ticket list; return what does not match."""
    problems = []
    if certificate.get("algorithm") != ALGORITHM:
        return [f"unknown algorithm {certificate.get('algorithm')!r}"]
    try:
        seed = bytes.fromhex(certificate["seed"])
    except (KeyError, TypeError, ValueError):
        return ["the seed is missing or not hexadecimal"]
    if tickets_sha256(tickets) != certificate.get("tickets_sha256"):
        problems.append("the ticket list is not the one drawn from (its SHA-256 differs)")
    if len(tickets) != certificate.get("tickets"):
        problems.append(
            f"the certificate counts {certificate.get('tickets')} tickets, the list {len(tickets)}"
        )
    commitment = certificate.get("commitment")
    if commitment is not None and commitment_of(seed) != commitment:
        problems.append("the seed does not match the commitment published before the draw")
    winners, reserves = list(certificate.get("winners", [])), list(certificate.get("reserves", []))
    order = first_drawn(seed, tickets, len(winners) + len(reserves))
    if order != winners + reserves:
        problems.append("recomputing the draw gives other winners or reserves")
    return problems
