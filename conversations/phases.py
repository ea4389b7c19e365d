"""The operation's phases, computed from its calendar, the time passed in, and the draw.

    not open → open → closed → drawn → finished

Any boundary of the calendar may be unset: that boundary then does not exist. An admin's
`/draw` closes entries early by freezing the ticket list (`OperationState.closed_at`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Phase(StrEnum):
    NOT_OPEN = "not_open"
    OPEN = "open"
    CLOSED = "closed"
    DRAWN = "drawn"
    FINISHED = "finished"


@dataclass(frozen=True)
class SilencePeriod:
    """Electoral silence: no campaign message leaves, only direct answers."""

    starts_at: datetime
    ends_at: datetime

    def __contains__(self, moment: datetime) -> bool:
        return self.starts_at <= moment < self.ends_at


@dataclass(frozen=True)
class Calendar:
    opens_at: datetime | None = None
    closes_at: datetime | None = None
    # Only shown to people: the draw itself is made by an admin.
    draw_announced_at: datetime | None = None
    # After the coffee; the retention of personal data counts from it.
    ends_at: datetime | None = None
    silences: tuple[SilencePeriod, ...] = ()

    def problems(self) -> list[tuple[str, str]]:
        """(setting, what is wrong) for dates out of order; empty when the calendar holds."""
        named = [
            ("OPERATION_OPENS_AT", self.opens_at),
            ("ENTRIES_CLOSE_AT", self.closes_at),
            ("DRAW_ANNOUNCED_AT", self.draw_announced_at),
            ("OPERATION_ENDS_AT", self.ends_at),
        ]
        present = [(name, moment) for name, moment in named if moment is not None]
        found = [
            (later, f"must come after {earlier}")
            for (earlier, before), (later, after) in itertools.pairwise(present)
            if after <= before
        ]
        found += [
            ("SILENCE_PERIODS", "each period must end after it starts")
            for period in self.silences
            if period.ends_at <= period.starts_at
        ]
        return found

    def silent(self, now: datetime) -> bool:
        return any(now in period for period in self.silences)

    def silence_ends(self, now: datetime) -> datetime | None:
        return next((period.ends_at for period in self.silences if now in period), None)


@dataclass(frozen=True)
class OperationState:
    """What the admins did to the calendar: entries closed by `/draw`, the draw made."""

    closed_at: datetime | None = None
    drawn: bool = False


def phase_at(calendar: Calendar, state: OperationState, now: datetime) -> Phase:
    if calendar.ends_at is not None and now >= calendar.ends_at:
        return Phase.FINISHED
    if state.drawn:
        return Phase.DRAWN
    closed = state.closed_at is not None and now >= state.closed_at
    if closed or (calendar.closes_at is not None and now >= calendar.closes_at):
        return Phase.CLOSED
    if calendar.opens_at is not None and now < calendar.opens_at:
        return Phase.NOT_OPEN
    return Phase.OPEN


def entries_closed_at(calendar: Calendar, state: OperationState) -> datetime | None:
    """When entries closed or will close: the earlier of the setting and an admin's freeze."""
    moments = [m for m in (calendar.closes_at, state.closed_at) if m is not None]
    return min(moments) if moments else None
