"""The draw, as anyone can redo it: order the tickets by HMAC-SHA256(seed, ticket) and take the
first ones as winners, the next ones as reserves, in that order.

Version 2 of the algorithm (`coffeebot-draw-2`), exactly:
1. The ticket list is the eligible tickets (ASCII strings), sorted, one per line, each line
   ending with "\\n"; `tickets_sha256` is the SHA-256 of that text, in hexadecimal.
2. Before the list is frozen, the admins choose a secret of 32 bytes and publish `commitment`,
   its SHA-256. The draw reveals the secret.
3. The beacon is a public random value published after the freeze: a drand round (its
   `randomness`, which is the SHA-256 of its `signature`), or a value an admin pasted and a
   second admin confirmed. `beacon.value` is that value as text.
4. seed = HMAC-SHA256(key = secret, message = UTF-8 of tickets_sha256 + "\\n" + beacon.value).
5. Each ticket's key is HMAC-SHA256(key = seed, message = the ticket's ASCII bytes); tickets are
   ordered by key, bytes compared as unsigned, smallest first.
6. The first `winners` tickets win; the next `reserves` are reserves, in that order.

Version 1 (`coffeebot-draw-1`) had steps 1, 5 and 6 with a seed chosen by the bot: `verify`
still checks those certificates.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from conversations.addenda import verify_addenda
from conversations.model import Participant, signup_consents_given

ALGORITHM_V1 = "coffeebot-draw-1: HMAC-SHA256(seed, ticket) ascending"
ALGORITHM = (
    "coffeebot-draw-2: seed = HMAC-SHA256(secret, tickets_sha256 LF beacon.value);"
    " HMAC-SHA256(seed, ticket) ascending"
)


class BeaconSource(StrEnum):
    DRAND = "drand"
    MANUAL = "manual"


class ExclusionReason(StrEnum):
    """Why a ticket is set aside before the freeze; public in the certificate."""

    STAFF = "staff"
    DUPLICATE = "duplicate"
    RULES = "rules"
    REQUEST = "request"


@dataclass(frozen=True)
class Beacon:
    """The public randomness of a draw, and what an outsider needs to check it."""

    source: BeaconSource
    value: str
    # Published no earlier than this (the freeze time plus the delay), ISO 8601.
    not_before: str
    round: int | None = None
    signature: str | None = None
    chain_hash: str | None = None
    url: str | None = None
    # The drand chain's first round time (Unix seconds) and seconds between rounds.
    genesis_time: int | None = None
    period: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


@dataclass(frozen=True)
class DrawCertificate:
    algorithm: str
    drawn_at: str
    frozen_at: str
    tickets: int
    tickets_sha256: str
    commitment: str
    secret: str
    beacon: dict[str, Any]
    seed: str
    winners: tuple[str, ...]
    reserves: tuple[str, ...]
    excluded: tuple[tuple[str, str], ...]
    # The audit log's last hash when the draw was made.
    audit_head: str

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["winners"], data["reserves"] = list(self.winners), list(self.reserves)
        data["excluded"] = [{"ticket": t, "reason": r} for t, r in self.excluded]
        return data


def why_ineligible(person: Participant) -> str | None:
    """The catalogue key saying why this signup cannot be drawn, or None when it can."""
    entry = person.entry
    if entry is None:
        return "ticket.not_complete" if person.completed_at is None else "ticket.not_confirmed"
    if entry.ticket is None:
        return "ticket.after_closing"
    if not signup_consents_given([consent.kind for consent in entry.consents]):
        return "ticket.no_consent"
    if entry.excluded_reason:
        return "ticket.excluded"
    return None


def ticket_list(tickets: Iterable[str]) -> str:
    return "".join(f"{ticket}\n" for ticket in sorted(tickets))


def tickets_sha256(tickets: Iterable[str]) -> str:
    return hashlib.sha256(ticket_list(tickets).encode("ascii")).hexdigest()


def commitment_of(secret: bytes) -> str:
    return hashlib.sha256(secret).hexdigest()


def drand_randomness(signature_hex: str) -> str:
    """drand's randomness of a round: the SHA-256 of its signature."""
    return hashlib.sha256(bytes.fromhex(signature_hex)).hexdigest()


def drand_round_at(moment: datetime, genesis_time: int, period: int) -> int:
    """The first drand round published at `moment` or later: round r comes at
    genesis_time + (r - 1) * period."""
    return max(1, -(-(math.ceil(moment.timestamp()) - genesis_time) // period) + 1)


def drand_round_time(round_number: int, genesis_time: int, period: int) -> datetime:
    return datetime.fromtimestamp(genesis_time + (round_number - 1) * period, UTC)


def final_seed(secret: bytes, list_sha256: str, beacon_value: str) -> bytes:
    message = f"{list_sha256}\n{beacon_value}".encode()
    return hmac.new(secret, message, hashlib.sha256).digest()


def first_drawn(seed: bytes, tickets: Iterable[str], count: int) -> list[str]:
    """The `count` first tickets in the draw's order, without sorting them all."""
    # Keyed once and copied per ticket: hmac.digest would derive the key's pads every time.
    keyed = hmac.new(seed, digestmod=hashlib.sha256)

    def order_key(ticket: str) -> bytes:
        mac = keyed.copy()
        mac.update(ticket.encode("ascii"))
        return mac.digest()

    return heapq.nsmallest(count, tickets, key=order_key)


@dataclass(frozen=True)
class FrozenDraw:
    """What is fixed before the beacon: the list, the places, the committed secret."""

    secret: bytes
    tickets: Sequence[str]
    winners: int
    reserves: int
    frozen_at: datetime
    excluded: tuple[tuple[str, str], ...]


def draw(
    frozen: FrozenDraw,
    beacon: Beacon,
    at: datetime,
    audit_head: str,
    order: Callable[[bytes, Sequence[str], int], list[str]] = first_drawn,
) -> DrawCertificate:
    """Draw from the frozen list; `order` may compute `first_drawn` faster, never differently."""
    tickets = frozen.tickets
    if len(set(tickets)) != len(tickets):
        raise ValueError("a ticket appears twice in the list")
    digest = tickets_sha256(tickets)
    seed = final_seed(frozen.secret, digest, beacon.value)
    drawn = order(seed, tickets, frozen.winners + frozen.reserves)
    return DrawCertificate(
        algorithm=ALGORITHM,
        drawn_at=at.isoformat(),
        frozen_at=frozen.frozen_at.isoformat(),
        tickets=len(tickets),
        tickets_sha256=digest,
        commitment=commitment_of(frozen.secret),
        secret=frozen.secret.hex(),
        beacon=beacon.to_json(),
        seed=seed.hex(),
        winners=tuple(drawn[: frozen.winners]),
        reserves=tuple(drawn[frozen.winners :]),
        excluded=frozen.excluded,
        audit_head=audit_head,
    )


def _beacon_problems(beacon: Any) -> list[str]:
    if not isinstance(beacon, Mapping) or not isinstance(beacon.get("value"), str):
        return ["the beacon is missing"]
    if beacon.get("source") == BeaconSource.MANUAL:
        return [] if beacon["value"].strip() else ["the beacon's value is empty"]
    if beacon.get("source") != BeaconSource.DRAND or not isinstance(beacon.get("round"), int):
        return ["the beacon is neither a drand round nor a confirmed manual value"]
    try:
        randomness = drand_randomness(str(beacon.get("signature")))
        not_before = datetime.fromisoformat(str(beacon.get("not_before")))
        first = drand_round_at(not_before, int(beacon["genesis_time"]), int(beacon["period"]))
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return ["the drand round's signature, time or chain is missing or malformed"]
    problems = []
    if randomness != beacon["value"]:
        problems.append("the drand value is not the SHA-256 of the round's signature")
    if beacon["round"] != first:
        problems.append(f"the drand round is not the first one after the freeze ({first})")
    return problems


def _time(value: Any) -> datetime:
    """A time of the certificate; a malformed one as the latest, so that it never passes."""
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.max.replace(tzinfo=UTC)


def _list_problems(certificate: Mapping[str, Any], tickets: Sequence[str]) -> list[str]:
    problems = []
    if tickets_sha256(tickets) != certificate.get("tickets_sha256"):
        problems.append("the ticket list is not the one drawn from (its SHA-256 differs)")
    if len(tickets) != certificate.get("tickets"):
        problems.append(
            f"the certificate counts {certificate.get('tickets')} tickets, the list {len(tickets)}"
        )
    return problems


def _order_problems(
    certificate: Mapping[str, Any], tickets: Sequence[str], seed: bytes
) -> list[str]:
    winners, reserves = list(certificate.get("winners", [])), list(certificate.get("reserves", []))
    if first_drawn(seed, tickets, len(winners) + len(reserves)) != winners + reserves:
        return ["recomputing the draw gives other winners or reserves"]
    return []


def _verify_v1(certificate: Mapping[str, Any], tickets: Sequence[str]) -> list[str]:
    try:
        seed = bytes.fromhex(certificate["seed"])
    except (KeyError, TypeError, ValueError):
        return ["the seed is missing or not hexadecimal"]
    problems = _list_problems(certificate, tickets)
    commitment = certificate.get("commitment")
    if commitment is not None and commitment_of(seed) != commitment:
        problems.append("the seed does not match the commitment published before the draw")
    return problems + _order_problems(certificate, tickets, seed)


def verify(
    certificate: Mapping[str, Any],
    tickets: Sequence[str],
    addenda: Sequence[Mapping[str, Any]] = (),
) -> list[str]:
    """Redo the draw from a certificate, its addenda and a ticket list; return what differs."""
    if certificate.get("algorithm") == ALGORITHM_V1:
        return _verify_v1(certificate, tickets) + verify_addenda(certificate, addenda)
    if certificate.get("algorithm") != ALGORITHM:
        return [f"unknown algorithm {certificate.get('algorithm')!r}"]
    try:
        secret = bytes.fromhex(certificate["secret"])
    except (KeyError, TypeError, ValueError):
        return ["the secret is missing or not hexadecimal"]
    problems = _list_problems(certificate, tickets)
    if commitment_of(secret) != certificate.get("commitment"):
        problems.append("the secret does not match the commitment published before the freeze")
    beacon_problems = _beacon_problems(certificate.get("beacon"))
    if not beacon_problems and _time(certificate["beacon"].get("not_before")) < _time(
        certificate.get("frozen_at")
    ):
        beacon_problems.append("the beacon may have been published before the list was frozen")
    problems += beacon_problems
    if beacon_problems:
        return problems
    seed = final_seed(
        secret, str(certificate.get("tickets_sha256")), certificate["beacon"]["value"]
    )
    if seed.hex() != certificate.get("seed"):
        problems.append("the seed is not the one the secret and the beacon give")
    excluded = {str(e.get("ticket")) for e in certificate.get("excluded", [])}
    if excluded & set(tickets):
        problems.append("an excluded ticket is in the list")
    problems += _order_problems(certificate, tickets, seed)
    return problems + verify_addenda(certificate, addenda)
