"""`/annonce`: an admin's message to supporters, run by the table in
conversations/announcements.py over the announcements' store.

Each step is written only if the announcement did not change since it was read, so two presses
of "Send" (one admin's double tap, or two admins at once) queue one batch; the loser reads the
announcement again and is answered from it. Confirming queues the batch in the same
transaction, and the outboxes' senders send it at Telegram's pace, or the mail sender's, across
restarts and outside electoral silence.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from bot.settings import Settings
from conversations.admin_effects import Audit
from conversations.announcements import (
    AnnouncementContext,
    AnnouncementOutcome,
    AnnouncementRules,
    AnnouncementStep,
    AskAdmins,
    Audience,
    Channel,
    QueueBroadcast,
    announce_step,
    awaits_text,
    channel_of,
    start,
)
from conversations.catalogue import Catalogue
from conversations.model import Press, Reply, Text
from storage import Storage
from storage.announcements import StoredAnnouncement

COMMANDS = frozenset({"annonce", "announce"})
# Presses this module answers: announce.confirm, announce.cancel, announce.audience.*
PRESS_PREFIX = "announce."
# A step lost to another admin's is read again and run again, at most this many times.
_ATTEMPTS = 3
# Announcements shown in /stats.
_SHOWN = 3


class Announcements:
    def __init__(
        self,
        storage: Storage,
        texts: Catalogue,
        settings: Settings,
        clock: Callable[[], datetime],
        send: Callable[[int, Reply], Awaitable[None]],
        mail_queued: Callable[[], None],
        telegram_queued: Callable[[], None],
    ) -> None:
        # Settings refuse a length Telegram would not take.
        self._rules = AnnouncementRules(max_length=settings.announcement_max_length)
        self._storage = storage
        self._store = storage.announcements
        self._texts = texts
        self._settings = settings
        self._clock = clock
        self._send = send
        self._queued = {Channel.EMAIL: mail_queued, Channel.TELEGRAM: telegram_queued}

    async def _context(self, language: str) -> AnnouncementContext:
        return AnnouncementContext(
            now=self._clock(),
            texts=self._texts,
            language=language,
            rules=self._rules,
            calendar=self._settings.calendar,
            zone=self._settings.zone,
            second_admin_required=self._settings.second_admin_required,
            recipients=await self._store.recipients(),
        )

    async def _latest(self) -> StoredAnnouncement | None:
        """The latest announcement, marked sent if its batch has all left meanwhile."""
        stored = await self._store.latest()
        if stored is not None and stored.announcement.step == AnnouncementStep.SENDING:
            await self._store.progress(stored)
            stored = await self._store.latest()
        return stored

    async def command(self, admin_id: int, language: str) -> None:
        """`/annonce`: a new draft, or what stops the one sending."""
        for _ in range(_ATTEMPTS):
            stored = await self._latest()
            current = stored.announcement if stored else None
            number = current.number + 1 if current else 1
            outcome = start(current, number, admin_id, await self._context(language))
            if outcome.announcement == current or await self._store.save(
                outcome.announcement, stored, self._clock()
            ):
                await self._act(admin_id, outcome)
                return
        await self._send(admin_id, Reply(self._texts.render(language, "admin.announce.busy.retry")))

    async def awaits_text(self, admin_id: int) -> bool:
        stored = await self._store.latest()
        return awaits_text(stored.announcement if stored else None, admin_id)

    async def text(self, admin_id: int, language: str, typed: str) -> None:
        await self._step(admin_id, language, Text(typed))

    async def press(self, admin_id: int, language: str, key: str) -> None:
        await self._step(admin_id, language, Press(key))

    async def _step(self, admin_id: int, language: str, event: Text | Press) -> None:
        for _ in range(_ATTEMPTS):
            stored = await self._latest()
            if stored is None:
                reply = self._texts.render(language, "remind.stale_button")
                await self._send(admin_id, Reply(reply))
                return
            context = await self._context(language)
            outcome = announce_step(stored.announcement, admin_id, event, context)
            if outcome.announcement == stored.announcement or await self._store.save(
                outcome.announcement, stored, self._clock()
            ):
                await self._act(admin_id, outcome)
                return
        await self._send(admin_id, Reply(self._texts.render(language, "admin.announce.busy.retry")))

    async def _act(self, admin_id: int, outcome: AnnouncementOutcome) -> None:
        """After the commit: wake the sender, ask the other admins, log, then answer."""
        for effect in outcome.effects:
            if isinstance(effect, QueueBroadcast):
                self._queued[channel_of(effect.audience)]()
            elif isinstance(effect, AskAdmins):
                for other in sorted(self._settings.admin_ids - {effect.except_id}):
                    await self._send(other, effect.reply)
            elif isinstance(effect, Audit):
                await self._storage.audit.log(
                    effect.admin_id,
                    effect.action,
                    effect.details,
                    self._clock(),
                    effect.note,
                    effect.ticket,
                )
            # CancelBroadcast was written with the step itself.
        for reply in outcome.replies:
            await self._send(admin_id, reply)

    async def statistics(self, language: str) -> str:
        """The latest announcements' progress, for /stats; empty when there was none."""
        lines = []
        for stored in await self._store.recent(_SHOWN):
            progress = await self._store.progress(stored)
            announcement = stored.announcement
            step = announcement.step
            if step == AnnouncementStep.SENDING and progress.done:
                step = AnnouncementStep.SENT
            audience = announcement.audience or Audience.ENTRANTS
            lines.append(
                self._texts.render(
                    language,
                    "admin.announce.progress",
                    number=str(announcement.number),
                    audience=self._texts.render(
                        language, f"admin.announce.audience_name.{audience}"
                    ),
                    state=self._texts.render(language, f"admin.announce.state.{step}"),
                    queued=str(progress.queued),
                    sent=str(progress.sent),
                    waiting=str(progress.waiting),
                    blocked=str(progress.blocked),
                    cancelled=str(progress.cancelled),
                    failed=str(progress.failed),
                )
            )
        return "\n".join(lines)
