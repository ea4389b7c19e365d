"""The admin tools: the draw and the winners' follow-up, statistics, export, questions, journal.

Admins are the Telegram ids in ADMIN_IDS, in a private chat. For anyone else these commands do
not exist: the conversation answers them like any unknown command.

Each job lives in its own module (bot/admin/*) as an `AdminJob` naming its commands and
buttons; this service registers each once, routes to them, and runs the periodic work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from bot.admin.announcements import Announcements
from bot.admin.draw_flow import DrawFlow, DrawTools
from bot.admin.draw_results import DrawResults
from bot.admin.exclusions import Exclusions
from bot.admin.expenses import ExpenseAdmin
from bot.admin.journal import Journal
from bot.admin.meeting import Meeting
from bot.admin.participants_export import ParticipantsExport
from bot.admin.places import Places
from bot.admin.questions import Questions
from bot.admin.statistics import Statistics
from bot.admin.tools import AdminButton, AdminCommand, AdminJob, AdminTools, Messenger
from bot.settings import Settings
from conversations.catalogue import Catalogue
from storage import Storage

__all__ = ["AdminService", "Messenger"]


class Draw(AdminJob):
    """/draw and its buttons: confirm, cancel, retry, and the second admin's beacon check."""

    def __init__(self, flow: DrawFlow) -> None:
        self._flow = flow

    def commands(self) -> Mapping[str, AdminCommand]:
        return {"draw": self._flow.command}

    def buttons(self) -> Mapping[str, AdminButton]:
        return {
            "admin.draw.confirm": self._flow.confirm,
            "admin.draw.cancel": self._flow.cancel,
            "admin.draw.retry": self._flow.try_to_draw,
            "admin.beacon.ok": self._flow.confirm_beacon,
        }


def routes(
    jobs: Sequence[AdminJob],
) -> tuple[dict[str, AdminCommand], dict[str, AdminButton]]:
    """Every job's commands and buttons; a name two jobs claim is refused at start."""
    commands: dict[str, AdminCommand] = {}
    buttons: dict[str, AdminButton] = {}
    for job in jobs:
        claimed = job.commands(), job.buttons()
        taken = (commands.keys() & claimed[0].keys()) | (buttons.keys() & claimed[1].keys())
        if taken:
            raise ValueError(f"{type(job).__name__} claims {sorted(taken)}, already taken")
        commands.update(claimed[0])
        buttons.update(claimed[1])
    return commands, buttons


class AdminService:
    def __init__(
        self,
        storage: Storage,
        texts: Catalogue,
        settings: Settings,
        clock: Callable[[], datetime],
        messenger: Messenger,
        mail_queued: Callable[[], None],
        telegram_queued: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._language = texts.default_language
        tools = AdminTools(storage, texts, settings, clock, messenger)
        self._tools = tools
        results = DrawResults(storage, texts, settings, clock)
        self._meeting = Meeting(tools)
        self._places = Places(tools, results, self._meeting, mail_queued, telegram_queued)
        draw_tools = DrawTools(
            tools.say, tools.reply, messenger.send, messenger.send_document, tools.audit,
            tools.local, self._places.drawn,
        )  # fmt: skip
        self.announcements = Announcements(
            storage, texts, settings, clock, messenger.send, mail_queued, telegram_queued
        )
        expenses = ExpenseAdmin(storage, texts, settings, clock, messenger, telegram_queued)
        self._draw_flow = DrawFlow(storage, settings, clock, draw_tools, self._language, results)
        jobs: list[AdminJob] = [
            Draw(self._draw_flow),
            self._places,
            self._meeting,
            Exclusions(tools),
            Statistics(tools, (self.announcements.statistics,)),
            ParticipantsExport(tools),
            Questions(tools),
            Journal(tools),
            expenses,
        ]
        self._commands, self._buttons = routes(jobs)

    def is_admin(self, user_id: int) -> bool:
        return user_id in self._settings.admin_ids

    def handles(self, name: str) -> bool:
        """Whether `name` is an admin command (for an admin; to anyone else it is unknown)."""
        return name in self._commands

    async def warn_email_cap(self, until: datetime) -> None:
        """The hourly cap on emails paused the sender (EMAILS_PER_HOUR): say until when."""
        cap = str(self._settings.emails_per_hour)
        await self._tools.tell_admins("admin.email_cap", count=cap, date=self._tools.local(until))

    async def command(self, admin_id: int, language: str, name: str, argument: str) -> None:
        """Runs an admin command; the caller has checked that the sender is an admin."""
        await self._commands[name](admin_id, language, argument.strip())

    async def press(self, admin_id: int, language: str, key: str) -> None:
        """An admin's button; a button no job owns any more is said to be stale."""
        action = self._buttons.get(key)
        if action is None:
            await self._tools.reply(admin_id, language, "remind.stale_button")
            return
        await action(admin_id, language)

    async def winner_answer(self, user_id: int, key: str) -> None:
        """Records a winner's acceptance or refusal; a refusal promotes the next reserve."""
        await self._places.winner_answer(user_id, key)

    async def tick(self) -> None:
        """Draws once the beacon is out, expires unanswered winners, promoting reserves, and
        sends the meeting's reminder."""
        await self._draw_flow.try_to_draw(None, self._language)
        await self._places.follow_up()
        await self._meeting.remind()
