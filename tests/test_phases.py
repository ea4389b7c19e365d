"""The operation's calendar: settings, phases, silence periods and dates as people read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.settings import Settings, SettingsError
from conversations.catalogue import Catalogue
from conversations.dates import long_datetime
from conversations.model import Area, Travel
from conversations.phases import Calendar, OperationState, Phase, phase_at
from conversations.policy import DEFAULT_TRAVEL

PARIS = ZoneInfo("Europe/Paris")
T = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
FULL = Calendar(
    opens_at=T,
    closes_at=T + timedelta(days=10),
    draw_announced_at=T + timedelta(days=11),
    ends_at=T + timedelta(days=30),
)


@pytest.mark.parametrize(
    ("calendar", "state", "now", "phase"),
    [
        (Calendar(), OperationState(), T, Phase.OPEN),
        (FULL, OperationState(), T - timedelta(seconds=1), Phase.NOT_OPEN),
        (FULL, OperationState(), T, Phase.OPEN),
        (FULL, OperationState(), T + timedelta(days=10), Phase.CLOSED),
        # /draw closes entries early, for good.
        (
            FULL,
            OperationState(closed_at=T + timedelta(days=2)),
            T + timedelta(days=3),
            Phase.CLOSED,
        ),
        (FULL, OperationState(closed_at=T, drawn=True), T + timedelta(days=3), Phase.DRAWN),
        (FULL, OperationState(closed_at=T, drawn=True), T + timedelta(days=30), Phase.FINISHED),
        (Calendar(ends_at=T), OperationState(), T, Phase.FINISHED),
    ],
)
def test_the_phase_follows_the_calendar_and_the_draw(
    calendar: Calendar, state: OperationState, now: datetime, phase: Phase
) -> None:
    assert phase_at(calendar, state, now) == phase


def test_settings_read_dates_in_the_meeting_zone_unless_they_carry_an_offset() -> None:
    settings = Settings.from_env(
        {
            "OPERATION_OPENS_AT": "2027-03-01T09:00",
            "ENTRIES_CLOSE_AT": "2027-03-20T20:00+00:00",
            "SILENCE_PERIODS": (
                "2027-04-09T00:00/2027-04-11T20:00, 2027-04-23T00:00/2027-04-25T20:00"
            ),
        }
    )
    calendar = settings.calendar
    assert calendar.opens_at == datetime(2027, 3, 1, 9, 0, tzinfo=PARIS)
    assert calendar.closes_at == datetime(2027, 3, 20, 20, 0, tzinfo=UTC)
    assert len(calendar.silences) == 2
    assert calendar.silent(datetime(2027, 4, 10, 12, 0, tzinfo=PARIS))
    assert not calendar.silent(datetime(2027, 4, 11, 20, 0, tzinfo=PARIS))
    assert calendar.silence_ends(datetime(2027, 4, 24, tzinfo=PARIS)) == datetime(
        2027, 4, 25, 20, 0, tzinfo=PARIS
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ENTRIES_CLOSE_AT": "le 20 mars"}, "ENTRIES_CLOSE_AT has an invalid value"),
        ({"OPERATION_OPENS_AT": "2027-03-32T10:00"}, "OPERATION_OPENS_AT has an invalid value"),
        (
            {"OPERATION_OPENS_AT": "2027-03-20T10:00", "ENTRIES_CLOSE_AT": "2027-03-01T10:00"},
            "ENTRIES_CLOSE_AT must come after OPERATION_OPENS_AT",
        ),
        (
            {"ENTRIES_CLOSE_AT": "2027-03-20T10:00", "OPERATION_ENDS_AT": "2027-03-20T10:00"},
            "OPERATION_ENDS_AT must come after ENTRIES_CLOSE_AT",
        ),
        ({"SILENCE_PERIODS": "2027-04-09T00:00"}, "SILENCE_PERIODS has an invalid period"),
        (
            {"SILENCE_PERIODS": "2027-04-11T00:00/2027-04-09T00:00"},
            "SILENCE_PERIODS each period must end after it starts",
        ),
        ({"MEETING_TIMEZONE": "Europe/Lutece"}, "MEETING_TIMEZONE has an invalid value"),
    ],
)
def test_invalid_or_inconsistent_dates_stop_the_bot_naming_the_variable(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({"OPERATION_OPENS_AT": "2027-01-01T00:00", **environ})


@pytest.mark.parametrize(
    ("language", "moment", "zone", "written"),
    [
        ("fr", datetime(2026, 11, 29, 10, 0, tzinfo=UTC), PARIS,
         "dimanche 29 novembre 2026 à 11 h, heure de Paris"),
        ("fr", datetime(2027, 3, 1, 8, 30, tzinfo=UTC), PARIS,
         "lundi 1er mars 2027 à 9 h 30, heure de Paris"),
        ("en", datetime(2026, 11, 29, 10, 0, tzinfo=UTC), PARIS,
         "Sunday 29 November 2026 at 11:00 (Paris time)"),
        ("fr", datetime(2026, 11, 29, 10, 0, tzinfo=UTC), ZoneInfo("Indian/Reunion"),
         "dimanche 29 novembre 2026 à 14 h, heure de La Réunion"),
        ("en", datetime(2026, 11, 29, 10, 5, tzinfo=UTC), ZoneInfo("America/Guadeloupe"),
         "Sunday 29 November 2026 at 6:05 (Guadeloupe time)"),
        ("fr", datetime(2026, 11, 29, 10, 0, tzinfo=UTC), ZoneInfo("Asia/Tokyo"),
         "dimanche 29 novembre 2026 à 19 h, Asia/Tokyo"),
    ],
)  # fmt: skip
def test_dates_are_written_in_full_with_their_time_zone(
    texts: Catalogue, language: str, moment: datetime, zone: ZoneInfo, written: str
) -> None:
    assert long_datetime(texts, language, moment, zone) == written


def test_corsica_travel_is_arranged_and_arranged_travel_has_a_cap(texts: Catalogue) -> None:
    assert DEFAULT_TRAVEL[Area.CORSICA] == Travel.ARRANGED
    assert "700\u00a0€" in texts.render("fr", "travel.arranged")
    assert "700 €" in texts.render("en", "travel.arranged")
