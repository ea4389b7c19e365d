"""The coffee itself: /rendezvous (/meeting) sets or changes its date, time and details; the
accepted winners are sent it with a calendar file, and reminded the day before."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from bot.admin.tools import AdminCommand, AdminJob, AdminTools
from conversations.admin import calendar_file, parse_meeting
from conversations.model import Reply
from conversations.winners import PlaceStatus


class Meeting(AdminJob):
    def __init__(self, tools: AdminTools) -> None:
        self._tools = tools
        self._meetings = tools.storage.meetings

    def commands(self) -> Mapping[str, AdminCommand]:
        return {"rendezvous": self.meeting, "meeting": self.meeting}

    async def meeting(self, admin_id: int, language: str, argument: str) -> None:
        """Shows the meeting, or sets it from what the admin typed."""
        tools = self._tools
        if not argument:
            meeting = await self._meetings.meeting()
            key, when = (
                ("admin.meeting.current", tools.local(meeting.starts_at))
                if meeting
                else ("admin.meeting.none", "")
            )
            await tools.reply(
                admin_id, language, key, when=when, details=meeting.details if meeting else ""
            )
            return
        parsed = parse_meeting(argument, tools.settings.zone)
        if parsed is None:
            await tools.reply(admin_id, language, "admin.meeting.usage")
            return
        silence_ends = tools.settings.calendar.silence_ends(tools.clock())
        if silence_ends is not None:
            # The winners would be sent campaign messages during electoral silence.
            until = tools.local(silence_ends, language)
            await tools.reply(admin_id, language, "admin.meeting.silence", until=until)
            return
        starts_at, details = parsed
        changed = await self._meetings.meeting() is not None
        await self._meetings.set_meeting(starts_at, details, tools.clock())
        await tools.audit(admin_id, "meeting.set", f"{starts_at.isoformat()} {details}")
        key = "winner.meeting_changed" if changed else "winner.meeting"
        told = await self._send_to_accepted(starts_at, details, key)
        await tools.reply(
            admin_id, language, "admin.meeting.set", when=tools.local(starts_at), told=str(told)
        )

    async def send_to_winner(self, user_id: int, language: str) -> None:
        """The meeting, if set, to a winner who has just accepted."""
        meeting = await self._meetings.meeting()
        if meeting:
            await self._send(
                user_id, language, meeting.starts_at, meeting.details, "winner.meeting"
            )

    async def remind(self) -> None:
        """The day before, once, outside silence periods: the accepted winners are reminded."""
        now = self._tools.clock()
        meeting = await self._meetings.meeting()
        if (
            meeting
            and not self._tools.settings.calendar.silent(now)
            and meeting.reminded_at is None
            and meeting.starts_at - timedelta(days=1) <= now < meeting.starts_at
            and await self._meetings.mark_reminded(now)
        ):
            await self._send_to_accepted(meeting.starts_at, meeting.details, "winner.reminder")

    async def _send(
        self, user_id: int, language: str, starts_at: datetime, details: str, key: str
    ) -> None:
        tools = self._tools
        text = tools.say(language, key, when=tools.local(starts_at), details=details)
        await tools.messenger.send(user_id, Reply(text))
        summary = tools.say(language, "winner.calendar_title")
        ics = calendar_file(
            f"meeting-{user_id}@coffeebot", starts_at, summary, details, tools.clock()
        )
        await tools.messenger.send_document(user_id, "rendez-vous.ics", ics, summary)

    async def _send_to_accepted(self, starts_at: datetime, details: str, key: str) -> int:
        sent = 0
        participants = self._tools.storage.participants
        for place in await self._tools.storage.draws.places():
            if place.status == PlaceStatus.ACCEPTED and place.user_id:
                person = await participants.load(place.user_id)
                if person:
                    await self._send(place.user_id, person.language, starts_at, details, key)
                    sent += 1
        return sent
