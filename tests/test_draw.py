"""The draw and the admin computations, as plain functions."""

from __future__ import annotations

import csv
import io
import random
from collections import Counter
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from conversations.admin import calendar_file, export_csv, parse_meeting, questions, statistics
from conversations.draw import (
    commitment_of,
    draw,
    first_drawn,
    tickets_sha256,
    verify,
    why_ineligible,
)
from conversations.model import (
    Action,
    Area,
    Participant,
    Step,
)
from tests.conftest import NOW
from tests.factories import entered

TICKETS = [f"T{n:09d}" for n in range(200)]
SEED = bytes(range(32))


def person(user_id: int, **changes: object) -> Participant:
    return entered(user_id, **changes)


def test_the_draw_is_reproducible_and_verifiable() -> None:
    certificate = draw(SEED, TICKETS, 5, 5, NOW)
    assert certificate == draw(SEED, list(reversed(TICKETS)), 5, 5, NOW)
    data = certificate.to_json()
    assert verify(data, TICKETS) == []
    assert len(set(certificate.winners + certificate.reserves)) == 10
    assert data["tickets"] == 200 and data["tickets_sha256"] == tickets_sha256(TICKETS)


def test_verification_fails_on_another_list_seed_or_result() -> None:
    data = draw(SEED, TICKETS, 5, 5, NOW).to_json()
    assert "SHA-256 differs" in verify(data, TICKETS[:-1])[0]
    assert verify(data, [*TICKETS[:-1], "T999999999"])
    assert verify({**data, "seed": bytes(32).hex()}, TICKETS) == [
        "recomputing the draw gives other winners or reserves"
    ]
    swapped = {**data, "winners": data["winners"][::-1]}
    assert verify(swapped, TICKETS)
    assert verify({**data, "seed": "zz"}, TICKETS) == ["the seed is missing or not hexadecimal"]


def test_a_commitment_binds_the_seed() -> None:
    data = draw(SEED, TICKETS, 5, 5, NOW, commitment=commitment_of(SEED)).to_json()
    assert verify(data, TICKETS) == []
    other = draw(bytes(32), TICKETS, 5, 5, NOW, commitment=commitment_of(SEED)).to_json()
    assert "does not match the commitment" in verify(other, TICKETS)[0]


def test_nobody_appears_twice() -> None:
    with pytest.raises(ValueError, match="twice"):
        draw(SEED, ["A", "B", "A"], 1, 1, NOW)
    certificate = draw(SEED, ["A", "B", "C"], 2, 5, NOW)
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
    from bot import drawing

    monkeypatch.setattr(drawing, "PARALLEL_FROM", 100)
    monkeypatch.setattr(drawing.os, "cpu_count", lambda: 3)
    tickets = [f"T{n:09d}" for n in range(1000)]
    assert drawing.first_drawn_in_parallel(SEED, tickets, 12) == first_drawn(SEED, tickets, 12)
