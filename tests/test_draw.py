"""The draw and the admin computations, as plain functions."""

from __future__ import annotations

import csv
import hashlib
import io
import random
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from conversations.addenda import ReplacementReason, next_addendum, standing, verify_addenda
from conversations.admin import calendar_file, export_csv, parse_meeting, questions, statistics
from conversations.draw import (
    ALGORITHM_V1,
    Beacon,
    BeaconSource,
    FrozenDraw,
    commitment_of,
    drand_randomness,
    drand_round_at,
    drand_round_time,
    draw,
    final_seed,
    first_drawn,
    tickets_sha256,
    verify,
    why_ineligible,
)
from conversations.ledger import GENESIS
from conversations.model import (
    Action,
    Area,
    Consent,
    ConsentKind,
    Participant,
    Step,
)
from tests.conftest import NOW
from tests.factories import entered

TICKETS = [f"T{n:09d}" for n in range(200)]
SEED = bytes(range(32))


def person(user_id: int, **changes: object) -> Participant:
    return entered(user_id, **changes)


SECRET = bytes(range(32, 64))
BEACON = Beacon(BeaconSource.MANUAL, "7 12 23 34 45 + 3", (NOW + timedelta(hours=1)).isoformat())


def frozen(tickets: list[str], winners: int = 5, reserves: int = 5) -> FrozenDraw:
    return FrozenDraw(SECRET, tickets, winners, reserves, NOW, (("X000000001", "staff"),))


def drand_beacon(
    not_before: datetime, genesis_time: int = 1_700_000_000, period: int = 3
) -> Beacon:
    signature = hashlib.sha256(b"a BLS signature, for the test").digest() * 3
    return Beacon(
        BeaconSource.DRAND,
        drand_randomness(signature.hex()),
        not_before.isoformat(),
        round=drand_round_at(not_before, genesis_time, period),
        signature=signature.hex(),
        chain_hash="fa" * 32,
        url="https://drand.example",
        genesis_time=genesis_time,
        period=period,
    )


def test_the_draw_is_reproducible_and_verifiable() -> None:
    certificate = draw(frozen(TICKETS), BEACON, NOW, GENESIS)
    assert certificate == draw(frozen(list(reversed(TICKETS))), BEACON, NOW, GENESIS)
    data = certificate.to_json()
    assert verify(data, TICKETS) == []
    assert len(set(certificate.winners + certificate.reserves)) == 10
    assert data["tickets"] == 200 and data["tickets_sha256"] == tickets_sha256(TICKETS)
    assert data["commitment"] == commitment_of(SECRET)
    assert data["excluded"] == [{"ticket": "X000000001", "reason": "staff"}]


def test_the_seed_needs_the_beacon() -> None:
    one = draw(frozen(TICKETS), BEACON, NOW, GENESIS)
    other = draw(frozen(TICKETS), replace(BEACON, value="8 12 23 34 45 + 3"), NOW, GENESIS)
    assert one.seed != other.seed and one.winners != other.winners
    assert bytes.fromhex(one.seed) == final_seed(SECRET, tickets_sha256(TICKETS), BEACON.value)


def test_verification_fails_on_another_list_secret_beacon_seed_or_result() -> None:
    data = draw(frozen(TICKETS), BEACON, NOW, GENESIS).to_json()
    assert "SHA-256 differs" in verify(data, TICKETS[:-1])[0]
    assert verify(data, [*TICKETS[:-1], "T999999999"])
    assert "does not match the commitment" in verify({**data, "secret": "00" * 32}, TICKETS)[0]
    assert verify({**data, "seed": "00" * 32}, TICKETS) == [
        "the seed is not the one the secret and the beacon give"
    ]
    other_beacon = {**data["beacon"], "value": "1 2 3"}
    assert "the seed is not" in verify({**data, "beacon": other_beacon}, TICKETS)[0]
    early = {**data["beacon"], "not_before": (NOW - timedelta(seconds=1)).isoformat()}
    assert "before the list was frozen" in verify({**data, "beacon": early}, TICKETS)[0]
    swapped = {**data, "winners": data["winners"][::-1]}
    assert verify(swapped, TICKETS) == ["recomputing the draw gives other winners or reserves"]
    assert verify({**data, "secret": "zz"}, TICKETS) == ["the secret is missing or not hexadecimal"]
    assert verify({**data, "algorithm": "coffeebot-draw-9"}, TICKETS)
    assert verify(data, [*TICKETS, "X000000001"]) == [
        "the ticket list is not the one drawn from (its SHA-256 differs)",
        "the certificate counts 200 tickets, the list 201",
        "an excluded ticket is in the list",
    ]


def test_a_drand_beacon_is_the_first_round_after_the_freeze_and_checks_out() -> None:
    not_before = NOW + timedelta(seconds=60)
    beacon = drand_beacon(not_before)
    assert beacon.round is not None and beacon.genesis_time is not None
    published = drand_round_time(beacon.round, beacon.genesis_time, 3)
    assert not_before <= published < not_before + timedelta(seconds=3)
    data = draw(frozen(TICKETS), beacon, NOW, GENESIS).to_json()
    assert verify(data, TICKETS) == []
    later = {**data["beacon"], "round": beacon.round + 1}
    assert "not the first one after the freeze" in verify({**data, "beacon": later}, TICKETS)[0]
    forged = {**data["beacon"], "value": "ab" * 32}
    assert (
        "not the SHA-256 of the round's signature" in verify({**data, "beacon": forged}, TICKETS)[0]
    )


def test_version_1_certificates_still_verify() -> None:
    seed = bytes(range(32))
    drawn = first_drawn(seed, TICKETS, 10)
    data = {
        "algorithm": ALGORITHM_V1, "drawn_at": NOW.isoformat(), "tickets": 200,
        "tickets_sha256": tickets_sha256(TICKETS), "seed": seed.hex(),
        "commitment": commitment_of(seed), "winners": drawn[:5], "reserves": drawn[5:],
    }  # fmt: skip
    assert verify(data, TICKETS) == []
    assert verify({**data, "commitment": "00" * 32}, TICKETS) == [
        "the seed does not match the commitment published before the draw"
    ]
    assert verify({**data, "seed": "zz"}, TICKETS) == ["the seed is missing or not hexadecimal"]


def test_addenda_follow_the_reserve_order_and_the_chain() -> None:
    data = draw(frozen(TICKETS, 2, 3), BEACON, NOW, GENESIS).to_json()
    winners, reserves = data["winners"], data["reserves"]
    addenda: list[dict[str, object]] = []
    for replaced, reason in (
        (winners[0], ReplacementReason.DECLINED),
        (reserves[0], ReplacementReason.UNREACHABLE),
    ):
        promoted = standing(data, addenda)[1][0]
        addenda.append(next_addendum(data, addenda, replaced, reason, promoted, NOW))
    assert verify(data, TICKETS, addenda) == []
    assert standing(data, addenda) == ([winners[1], reserves[1]], [reserves[2]])
    edited = [{**addenda[0], "reason": "withdrew"}, addenda[1]]
    assert verify(data, TICKETS, edited) == [
        "addendum 2: not chained to the certificate and the addenda before it"
    ]
    assert "numbered 2" in verify(data, TICKETS, addenda[1:])[0]
    skipping = [{**addenda[0], "promoted": reserves[1]}]
    assert verify(data, TICKETS, skipping) == [
        f"addendum 1: promotes {reserves[1]}, the next is {reserves[0]}"
    ]
    not_winner = [{**addenda[0], "replaced": reserves[2]}]
    assert verify(data, TICKETS, not_winner) == [f"addendum 1: {reserves[2]} is not a winner then"]
    other_draw = {**data, "drawn_at": "2027-01-01T00:00:00+00:00"}
    assert "not chained" in verify_addenda(other_draw, addenda)[0]


def test_nobody_appears_twice() -> None:
    with pytest.raises(ValueError, match="twice"):
        draw(frozen(["A", "B", "A"], 1, 1), BEACON, NOW, GENESIS)
    certificate = draw(frozen(["A", "B", "C"], 2, 5), BEACON, NOW, GENESIS)
    assert sorted(certificate.winners + certificate.reserves) == ["A", "B", "C"]


def test_the_draw_is_fair() -> None:
    """Over many seeds, each of 10 tickets comes first about as often (chi-square, 9 d.o.f.)."""
    tickets, rounds = [f"TICKET{n}" for n in range(10)], 20_000
    chance = random.Random(2027)
    firsts = Counter(first_drawn(chance.randbytes(32), tickets, 1)[0] for _ in range(rounds))
    expected = rounds / len(tickets)
    chi_square = sum((firsts[t] - expected) ** 2 / expected for t in tickets)
    assert chi_square < 27.88  # the 0.1 % critical value: a fair draw fails 1 time in 1,000


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),
        ({"completed_at": None, "entry": None}, "ticket.not_complete"),
        ({"entry": None}, "ticket.not_confirmed"),
        # Looking at the summary, or typing a new address, never takes the entry out.
        ({"step": Step.SUMMARY, "paused": True}, None),
        ({"email": "new@free.fr"}, None),
        ({"consents": ()}, "ticket.no_consent"),
        ({"excluded_reason": "staff"}, "ticket.excluded"),
        ({"ticket": None}, "ticket.after_closing"),
    ],
)
def test_eligibility(changes: dict[str, object], reason: str | None) -> None:
    assert why_ineligible(person(1, **changes)) == reason


@pytest.mark.parametrize(
    ("kinds", "reason"),
    [
        ((ConsentKind.ADULT, ConsentKind.PROCESSING, ConsentKind.RULES), None),
        # Entries made before the rules and the processing were two ticks keep the bundled one.
        ((ConsentKind.ADULT, ConsentKind.DRAW), None),
        ((ConsentKind.ADULT, ConsentKind.RULES), "ticket.no_consent"),
        ((ConsentKind.ADULT, ConsentKind.PROCESSING), "ticket.no_consent"),
        ((ConsentKind.PROCESSING, ConsentKind.RULES), "ticket.no_consent"),
        ((ConsentKind.DRAW,), "ticket.no_consent"),
    ],
)
def test_eligibility_needs_every_signup_consent(
    kinds: tuple[ConsentKind, ...], reason: str | None
) -> None:
    consents = tuple(Consent(kind, "fr-v", NOW) for kind in kinds)
    assert why_ineligible(person(1, consents=consents)) == reason


def test_export_neutralises_formulas_and_opens_as_columns() -> None:
    people = [
        person(1, first_name='=HYPERLINK("http://x")', question="+33 c'est moi; et alors"),
        person(2, last_name="@SUM(A1)", entered_at=NOW + timedelta(hours=1)),
        person(3, entry=None),
    ]
    content = export_csv(people)
    assert content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(content.decode("utf-8-sig")), delimiter=";"))
    header, first, second = rows
    assert len(rows) == 3 and len(header) == len(first) == len(second)
    assert header[:5] == ["ticket", "first_name", "last_name", "phone", "email"]
    assert first[1] == '\'=HYPERLINK("http://x")'
    assert first[header.index("question")] == "'+33 c'est moi; et alors"
    assert first[header.index("phone")] == "'+33612340001"
    assert second[2] == "'@SUM(A1)"


def test_statistics_match_a_seeded_list() -> None:
    people = [
        person(1, actions=frozenset({Action.LEAFLETS}), referral_code="R1", friends_invited=2),
        person(2, area=Area.PARIS, departement="75", referrer="R1"),
        person(3, entry=None, referrer="R1"),
        person(4, completed_at=None, step=Step.PHONE, entry=None),
        person(5, excluded_reason="staff", completed_at=NOW + timedelta(days=1)),
    ]
    stats = statistics(people)
    assert (stats.started, stats.completed, stats.confirmed, stats.eligible) == (5, 4, 3, 2)
    assert stats.engaged["leaflets"] == 1 and stats.engaged["events"] == 0
    assert (stats.friends_invited, stats.friends_joined) == (2, 1)
    assert stats.by_area == {"province": 2, "paris": 1}
    assert stats.by_departement == {"69": 2, "75": 1}
    assert stats.per_day == [("2026-11-26", 3), ("2026-11-27", 1)]


def test_questions_newest_first_with_postcodes() -> None:
    people = [
        person(1, question="Et l'école ?"),
        person(
            2, question="Et les trains ?", postcode="75011", completed_at=NOW + timedelta(hours=1)
        ),
        person(3, question=None),
    ]
    assert questions(people) == [("75011", "Et les trains ?"), ("69003", "Et l'école ?")]


def test_the_meeting_is_read_in_the_campaigns_time_zone() -> None:
    paris = ZoneInfo("Europe/Paris")
    argument = "2027-03-14 15:30 QG, 10 rue de Solférino; apportez une pièce d'identité"
    parsed = parse_meeting(argument, paris)
    assert parsed is not None
    starts_at, details = parsed
    assert starts_at.utcoffset() == timedelta(hours=1) and starts_at.hour == 15
    assert details.startswith("QG, 10 rue")
    for wrong in ("demain 15h", "2027-02-30 15:00 QG", "2027-03-14 25:00 QG", "2027-03-14 15:30"):
        assert parse_meeting(wrong, paris) is None


def test_the_calendar_file_is_valid_icalendar() -> None:
    parsed = parse_meeting(
        "2027-03-14 15:30 " + "QG, 10 rue de Solférino; " * 5, ZoneInfo("Europe/Paris")
    )
    assert parsed is not None
    starts_at, details = parsed
    content = calendar_file("uid-1@coffeebot", starts_at, "Café avec Camille", details, NOW)
    lines = content.decode().split("\r\n")
    assert lines[0] == "BEGIN:VCALENDAR" and lines[-2] == "END:VCALENDAR" and lines[-1] == ""
    assert "DTSTART:20270314T143000Z" in lines and "DTEND:20270314T153000Z" in lines
    assert all(len(line.encode()) <= 75 for line in lines)
    unfolded = content.decode().replace("\r\n ", "")
    assert "DESCRIPTION:QG\\, 10 rue de Solférino\\; QG" in unfolded


def test_the_bots_parallel_ordering_is_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.admin import drawing

    monkeypatch.setattr(drawing, "PARALLEL_FROM", 100)
    monkeypatch.setattr(drawing.os, "cpu_count", lambda: 3)
    tickets = [f"T{n:09d}" for n in range(1000)]
    assert drawing.first_drawn_in_parallel(SEED, tickets, 12) == first_drawn(SEED, tickets, 12)
