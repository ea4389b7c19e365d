"""What the admin tools compute, as plain functions: statistics, the CSV export, the meeting
and its calendar file."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

from conversations.draw import why_ineligible
from conversations.model import Action, ConsentKind, Participant


@dataclass(frozen=True)
class Statistics:
    started: int
    completed: int
    confirmed: int
    eligible: int
    engaged: dict[str, int]
    friends_invited: int
    friends_joined: int
    by_area: dict[str, int]
    by_departement: dict[str, int]
    # Completed signups per day, oldest first, for the chart.
    per_day: list[tuple[str, int]] = field(default_factory=list)


def statistics(people: list[Participant]) -> Statistics:
    completed = [p for p in people if p.completed_at is not None]
    entries = [p.entry for p in people if p.entry is not None]
    confirmed = [p for p in people if p.entry is not None]
    codes = {p.referral_code for p in people if p.referral_code}
    per_day = Counter(p.completed_at.date().isoformat() for p in completed if p.completed_at)
    return Statistics(
        started=len(people),
        completed=len(completed),
        confirmed=len(confirmed),
        eligible=sum(why_ineligible(p) is None for p in people),
        engaged={str(action): sum(action in p.actions for p in confirmed) for action in Action},
        friends_invited=sum(p.friends_invited for p in people),
        friends_joined=sum(p.referrer in codes for p in confirmed),
        by_area=dict(Counter(str(entry.area) for entry in entries).most_common()),
        by_departement=dict(Counter(entry.departement for entry in entries).most_common()),
        per_day=sorted(per_day.items()),
    )


EXPORT_COLUMNS = (
    "ticket", "first_name", "last_name", "phone", "email", "postcode", "departement", "area",
    "entered_at", "actions", "availability", "news_email", "news_sms", "question", "excluded",
)  # fmt: skip
# A spreadsheet would run a cell starting with these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralised(value: str) -> str:
    return f"'{value}" if value.startswith(_FORMULA_START) else value


@dataclass(frozen=True)
class ExportRow:
    """One confirmed participant, as the export shows them."""

    ticket: str | None
    first_name: str | None
    last_name: str | None
    phone: str
    email: str
    postcode: str
    departement: str
    area: str
    entered_at: datetime
    actions: frozenset[str]
    availability: frozenset[str]
    news_email: bool
    news_sms: bool
    question: str | None
    excluded_reason: str | None


# UTF-8 with a BOM, `;` between cells, CRLF: as French Excel opens it.
EXPORT_START = "\ufeff"


def export_line(row: ExportRow | None) -> str:
    """One line of the CSV export; the header for None."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    if row is None:
        writer.writerow(EXPORT_COLUMNS)
        return out.getvalue()
    values = (
        row.ticket, row.first_name, row.last_name, row.phone, row.email, row.postcode,
        row.departement, row.area, row.entered_at.isoformat(timespec="seconds"),
        ",".join(sorted(row.actions)), ",".join(sorted(row.availability)),
        "oui" if row.news_email else "non", "oui" if row.news_sms else "non",
        row.question, row.excluded_reason,
    )  # fmt: skip
    writer.writerow([neutralised(str(value)) if value is not None else "" for value in values])
    return out.getvalue()


def export_row(p: Participant) -> ExportRow | None:
    entry = p.entry
    if entry is None:
        return None
    return ExportRow(
        entry.ticket, p.first_name, p.last_name, entry.phone, entry.email, entry.postcode,
        entry.departement, str(entry.area), entry.entered_at, frozenset(map(str, p.actions)),
        frozenset(map(str, p.availability)), p.has_consented(ConsentKind.NEWS_EMAIL),
        p.has_consented(ConsentKind.NEWS_SMS), p.question, entry.excluded_reason,
    )  # fmt: skip


def export_csv(people: list[Participant]) -> bytes:
    """Confirmed participants, oldest entry first (the shell streams the same lines)."""
    rows = sorted(
        (row for row in map(export_row, people) if row is not None), key=lambda r: r.entered_at
    )
    return (EXPORT_START + export_line(None) + "".join(map(export_line, rows))).encode()


def questions(people: list[Participant]) -> list[tuple[str, str]]:
    """(postcode, question) of completed signups, newest first."""
    asked = [p for p in people if p.question and p.completed_at]
    asked.sort(key=lambda p: p.completed_at or p.created_at, reverse=True)
    return [(p.postcode or "", p.question or "") for p in asked]


_MEETING = re.compile(r"(\d{4}-\d{2}-\d{2})\s+(\d{1,2}):(\d{2})\s+(.+)", re.DOTALL)


def parse_meeting(argument: str, zone: tzinfo) -> tuple[datetime, str] | None:
    """`2027-03-14 15:30 QG, 10 rue …; bring an ID` → the time in `zone`, and the details."""
    match = _MEETING.fullmatch(argument.strip())
    if not match:
        return None
    try:
        day = datetime.fromisoformat(match[1])
        starts_at = day.replace(hour=int(match[2]), minute=int(match[3]), tzinfo=zone)
    except ValueError:
        return None
    return starts_at, match[4].strip()


def _ics_text(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return escaped.replace("\r\n", "\\n").replace("\n", "\\n")


def _ics_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def calendar_file(
    uid: str, starts_at: datetime, summary: str, details: str, now: datetime
) -> bytes:
    """An iCalendar (RFC 5545) event of one hour, in UTC, that calendars import."""
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//coffeebot//meeting//FR",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        f"DTSTAMP:{_ics_time(now)}",
        f"DTSTART:{_ics_time(starts_at)}",
        f"DTEND:{_ics_time(starts_at + timedelta(hours=1))}",
        f"SUMMARY:{_ics_text(summary)}",
        f"DESCRIPTION:{_ics_text(details)}",
        f"LOCATION:{_ics_text(details.splitlines()[0] if details else '')}",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(_folded(line) for line in lines).encode()


def _folded(line: str) -> str:
    """A content line folded at 75 octets, never inside a UTF-8 character (RFC 5545, 3.1)."""
    parts: list[str] = []
    current = ""
    for char in line:
        if len((current + char).encode()) > (75 if not parts else 74):
            parts.append(current)
            current = ""
        current += char
    parts.append(current)
    return "\r\n ".join(parts) + "\r\n"
