"""The admin tools: the draw and the winners' follow-up, statistics, export, questions, journal.

Admins are the Telegram ids in ADMIN_IDS, in a private chat. For anyone else these commands do
not exist: the conversation answers them like any unknown command.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from bot.admin.draw_flow import CERTIFICATE_FILE, DrawFlow, DrawTools
from bot.admin.draw_results import DrawResults
from bot.admin.expenses import ExpenseAdmin
from bot.admin.exports import gzipped, write_export
from bot.settings import Settings
from conversations.addenda import BY_HAND, ReplacementReason
from conversations.admin import calendar_file, parse_meeting
from conversations.catalogue import Catalogue
from conversations.dates import long_datetime
from conversations.draw import ExclusionReason
from conversations.expenses import ReceiptKind
from conversations.ledger import record_hash
from conversations.model import Participant, Reply, Travel
from conversations.winners import (
    BATCH,
    Place,
    PlaceChange,
    PlaceStatus,
    Refused,
    Role,
    answer,
    overdue,
    replaceable,
    replacement,
)
from storage import Storage
from storage.draws import FROZEN
from storage.ports import TelegramStatus

log = logging.getLogger(__name__)

ADMIN_COMMANDS = {
    "draw": "draw",
    "stats": "stats",
    "export": "export",
    "questions": "questions",
    "journal": "journal",
    "log": "journal",
    "exclure": "exclude",
    "exclude": "exclude",
    "remplacer": "replace",
    "replace": "replace",
    "rendezvous": "meeting",
    "meeting": "meeting",
    "gagnants": "winners",
    "winners": "winners",
    "frais": "expenses",
    "expenses": "expenses",
    "rembourser": "reimburse",
    "reimburse": "reimburse",
}


ADDENDA_FILE = "avenants-tirage.json"


class Messenger(Protocol):
    """Sends to any chat: an admin's, or a winner's."""

    async def send(self, chat_id: int, reply: Reply) -> None: ...

    async def send_document(
        self, chat_id: int, filename: str, content: bytes, caption: str
    ) -> None: ...

    async def send_photo(self, chat_id: int, content: bytes, caption: str) -> None: ...

    async def send_receipt(
        self, chat_id: int, file_id: str, kind: ReceiptKind, caption: str
    ) -> None: ...


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
        self._storage = storage
        self._store = storage.participants
        self._admin = storage.draws
        self._meetings = storage.meetings
        self._texts = texts
        self._settings = settings
        self._clock = clock
        self._messenger = messenger
        self._mail_queued = mail_queued
        self._telegram_queued = telegram_queued
        self._zone = settings.zone
        self._results = DrawResults(storage, texts, settings, clock)
        self._telegram_outbox = storage.telegram
        # Replacements one at a time: each addendum names the one before it.
        self._replacing = asyncio.Lock()
        tools = DrawTools(
            self._say, self._reply, messenger.send, messenger.send_document, self._audit,
            self._local, self._drawn,
        )  # fmt: skip
        self._draw_flow = DrawFlow(
            storage, settings, clock, tools, texts.default_language, self._results
        )
        expenses = ExpenseAdmin(storage, texts, settings, clock, messenger, telegram_queued)
        self._expenses, self._reimburse = expenses.show, expenses.pay

    def is_admin(self, user_id: int) -> bool:
        return user_id in self._settings.admin_ids

    def _say(self, language: str, key: str, **params: str) -> str:
        return self._texts.render(language, key, **params)

    async def _reply(self, chat_id: int, language: str, key: str, **params: str) -> None:
        await self._messenger.send(chat_id, Reply(self._say(language, key, **params)))

    async def _tell_admins(self, key: str, **params: str) -> None:
        for admin_id in sorted(self._settings.admin_ids):
            await self._reply(admin_id, self._texts.default_language, key, **params)

    async def _audit(self, admin_id: int, action: str, details: str) -> None:
        await self._storage.audit.log(admin_id, action, details, self._clock())

    def _local(self, moment: datetime, language: str | None = None) -> str:
        """A moment in full, in the meeting's zone, naming it."""
        chosen = language or self._texts.default_language
        return long_datetime(self._texts, chosen, moment, self._zone)

    async def command(self, admin_id: int, language: str, name: str, argument: str) -> None:
        """Runs an admin command; the caller has checked that the sender is an admin."""
        handler = getattr(self, f"_{ADMIN_COMMANDS[name]}")
        await handler(admin_id, language, argument.strip())

    # The draw.

    async def _draw(self, admin_id: int, language: str, argument: str) -> None:
        await self._draw_flow.command(admin_id, language, argument)

    async def press(self, admin_id: int, language: str, key: str) -> None:
        """The draw's buttons: confirm, cancel, retry, and the second admin's beacon check."""
        actions = {
            "admin.draw.confirm": self._draw_flow.confirm,
            "admin.draw.cancel": self._draw_flow.cancel,
            "admin.draw.retry": self._draw_flow.try_to_draw,
            "admin.beacon.ok": self._draw_flow.confirm_beacon,
        }
        action = actions.get(key)
        if action is None:
            await self._reply(admin_id, language, "remind.stale_button")
            return
        await action(admin_id, language)

    async def _drawn(self, places: list[Place]) -> None:
        """Tells the admins the result; the entrants' messages were queued with it."""
        self._telegram_queued()
        self._mail_queued()
        for admin_id in sorted(self._settings.admin_ids):
            text = await self._result_text(self._texts.default_language, places)
            await self._messenger.send(admin_id, Reply(text))
        # Winners erased since the freeze are replaced by the next tick.

    async def _still_entered(self, place: Place) -> bool:
        person = await self._store.load(place.user_id) if place.user_id else None
        return person is not None and person.entry is not None

    async def _result_text(self, language: str, places: list[Place]) -> str:
        lines = [self._say(language, "admin.draw.result")]
        for place in places:
            person = await self._store.load(place.user_id) if place.user_id else None
            lines.append(self._place_line(language, place, person))
        return "\n".join(lines)

    def _place_line(self, language: str, place: Place, person: Participant | None) -> str:
        role = self._say(language, f"admin.role.{place.role}")
        status = self._say(language, f"place.{place.status}")
        head = f"{place.rank}. {place.ticket} — {role}"
        if person is None:
            return f"{head} — {self._say(language, 'admin.erased')} — {status}"
        # The area and travel frozen at the draw, whatever the person edited since.
        area = self._say(language, f"area.{place.area}") if place.area else "—"
        postcode = person.entry.postcode if person.entry else person.postcode
        who = f"{person.first_name} {person.last_name}, {postcode} ({area})"
        travel = self._say(language, f"travel.{place.travel or Travel.NONE}")
        return f"{head} — {who} — {travel} — {status}"

    # Winners.

    async def _replace_winner(self, ended: PlaceChange, reason: ReplacementReason) -> bool:
        """Ends a winner's place and promotes the next reserve, in one transaction with the
        public addendum and the messages and email telling the new winner; False when the
        place changed meanwhile. A promoted reserve erased since is replaced in turn."""
        async with self._replacing:
            record = await self._admin.draw()
            if record is None or record.certificate is None:
                return False
            now = self._clock()
            change = replacement(
                ended,
                reason,
                await self._admin.places(),
                record.certificate,
                await self._admin.addenda(),
                self._results.respond_by(now),
                now,
            )
            promoted = change.promoted
            notice = await self._results.promotion_statements(promoted, now) if promoted else []
            if not await self._admin.replace_winner(
                ended.place,
                ended.status,
                change.reserve,
                promoted.deadline if promoted and promoted.deadline else now,
                change.addendum,
                now,
                notice or [],
            ):
                return False
        if promoted is None:
            await self._tell_admins("admin.no_reserve_left")
            return True
        await self._tell_admins("admin.promoted", ticket=promoted.ticket, rank=str(promoted.rank))
        if notice is None:
            if await self._replace_winner(
                PlaceChange(promoted, PlaceStatus.REPLACED), ReplacementReason.ERASED
            ):
                await self._tell_admins("admin.winner_gone", ticket=promoted.ticket)
            return True
        self._telegram_queued()
        self._mail_queued()
        return True

    async def winner_answer(self, user_id: int, key: str) -> None:
        """Records a winner's acceptance or refusal; a refusal promotes the next reserve."""
        person = await self._store.load(user_id)
        language = person.language if person else self._texts.default_language
        decided = answer(await self._admin.places(), user_id, key, self._clock())
        if isinstance(decided, Refused):
            await self._reply(user_id, language, decided.text_key)
            return
        place, accepted = decided.place, decided.status == PlaceStatus.ACCEPTED
        if accepted:
            changed = await self._admin.update_place(place, decided.status, self._clock())
        else:
            changed = await self._replace_winner(decided, ReplacementReason.DECLINED)
        if not changed:
            await self._reply(user_id, language, "winner.no_answer_expected")
            return
        await self._tell_admins(
            "admin.accepted" if accepted else "admin.declined", ticket=place.ticket
        )
        if accepted:
            await self._reply(user_id, language, "winner.accepted")
            meeting = await self._meetings.meeting()
            if meeting:
                await self._send_meeting(
                    user_id, language, meeting.starts_at, meeting.details, "winner.meeting"
                )
        else:
            await self._reply(user_id, language, "winner.declined")

    async def tick(self) -> None:
        """Draws once the beacon is out, expires unanswered winners, promoting reserves, and
        sends the meeting's reminder."""
        await self._draw_flow.try_to_draw(None, self._texts.default_language)
        now = self._clock()
        for place in await self._admin.places():
            if place.role != Role.WINNER or place.status not in (
                PlaceStatus.NOTIFIED,
                PlaceStatus.ACCEPTED,
            ):
                continue
            # Erased: the next reserve need not wait for a deadline nobody will meet.
            if not await self._still_entered(place) and await self._replace_winner(
                PlaceChange(place, PlaceStatus.REPLACED), ReplacementReason.ERASED
            ):
                await self._tell_admins("admin.winner_gone", ticket=place.ticket)
        for expired in overdue(await self._admin.places(), now):
            if await self._replace_winner(expired, ReplacementReason.EXPIRED):
                await self._tell_admins("admin.expired", ticket=expired.place.ticket)
        meeting = await self._meetings.meeting()
        if (
            meeting
            and not self._settings.calendar.silent(now)
            and meeting.reminded_at is None
            and meeting.starts_at - timedelta(days=1) <= now < meeting.starts_at
            and await self._meetings.mark_reminded(now)
        ):
            await self._send_to_accepted(meeting.starts_at, meeting.details, "winner.reminder")

    async def _send_meeting(
        self, user_id: int, language: str, starts_at: datetime, details: str, key: str
    ) -> None:
        text = self._say(language, key, when=self._local(starts_at), details=details)
        await self._messenger.send(user_id, Reply(text))
        summary = self._say(language, "winner.calendar_title")
        ics = calendar_file(
            f"meeting-{user_id}@coffeebot", starts_at, summary, details, self._clock()
        )
        await self._messenger.send_document(user_id, "rendez-vous.ics", ics, summary)

    async def _send_to_accepted(self, starts_at: datetime, details: str, key: str) -> int:
        sent = 0
        for place in await self._admin.places():
            if place.status == PlaceStatus.ACCEPTED and place.user_id:
                person = await self._store.load(place.user_id)
                if person:
                    await self._send_meeting(
                        place.user_id, person.language, starts_at, details, key
                    )
                    sent += 1
        return sent

    async def _replace(self, admin_id: int, language: str, argument: str) -> None:
        """Replaces a winner by hand (unreachable, say) with the next reserve, for a reason."""
        ticket, _, rest = argument.partition(" ")
        word, _, details = rest.strip().partition(" ")
        reason = self._reason(language, word, BY_HAND, "replacement")
        if not ticket or reason is None:
            await self._reply(admin_id, language, "admin.replace.usage", reasons=self._reasons(
                language, BY_HAND, "replacement"))  # fmt: skip
            return
        place = next((p for p in await self._admin.places() if p.ticket == ticket.upper()), None)
        refusal = replaceable(place)
        if refusal is not None or place is None:
            shown = place.ticket if place is not None else ticket
            await self._reply(admin_id, language, refusal or "", ticket=shown)
            return
        ended = PlaceChange(place, PlaceStatus.REPLACED)
        if await self._replace_winner(ended, ReplacementReason(reason)):
            await self._audit(admin_id, "winner.replace", f"{place.ticket} {reason} {details}")
            await self._reply(admin_id, language, "admin.replace.done", ticket=place.ticket)

    def _reason(self, language: str, word: str, allowed: tuple[str, ...], kind: str) -> str | None:
        """The reason an admin typed, as its code or as its name in their language."""
        typed = word.casefold()
        for code in allowed:
            if typed in (code, self._say(language, f"{kind}.{code}").casefold()):
                return code
        return None

    def _reasons(self, language: str, allowed: tuple[str, ...], kind: str) -> str:
        return ", ".join(self._say(language, f"{kind}.{code}") for code in allowed)

    async def _meeting(self, admin_id: int, language: str, argument: str) -> None:
        """Sets or changes the coffee's date, time and details; accepted winners are told."""
        if not argument:
            meeting = await self._meetings.meeting()
            key, when = (
                ("admin.meeting.current", self._local(meeting.starts_at))
                if meeting
                else ("admin.meeting.none", "")
            )
            await self._reply(
                admin_id, language, key, when=when, details=meeting.details if meeting else ""
            )
            return
        parsed = parse_meeting(argument, self._zone)
        if parsed is None:
            await self._reply(admin_id, language, "admin.meeting.usage")
            return
        silence_ends = self._settings.calendar.silence_ends(self._clock())
        if silence_ends is not None:
            # The winners would be sent campaign messages during electoral silence.
            until = self._local(silence_ends, language)
            await self._reply(admin_id, language, "admin.meeting.silence", until=until)
            return
        starts_at, details = parsed
        changed = await self._meetings.meeting() is not None
        await self._meetings.set_meeting(starts_at, details, self._clock())
        await self._audit(admin_id, "meeting.set", f"{starts_at.isoformat()} {details}")
        key = "winner.meeting_changed" if changed else "winner.meeting"
        told = await self._send_to_accepted(starts_at, details, key)
        await self._reply(
            admin_id, language, "admin.meeting.set", when=self._local(starts_at), told=str(told)
        )

    async def _winners(self, admin_id: int, language: str, argument: str) -> None:
        """Lists winners and reserves with their status, and the meeting."""
        await self._audit(admin_id, "winners", "")
        places = await self._admin.places()
        if not places:
            await self._reply(admin_id, language, "admin.winners.none")
            return
        text = await self._result_text(language, places[: self._settings.admin_list_limit])
        progress = await self._telegram_outbox.progress(BATCH)
        text += "\n\n" + self._say(
            language,
            "admin.winners.progress",
            sent=str(progress.get(TelegramStatus.SENT, 0)),
            total=str(sum(progress.values())),
            waiting=str(progress.get(TelegramStatus.PENDING, 0)),
            blocked=str(progress.get(TelegramStatus.BLOCKED, 0)),
            failed=str(
                progress.get(TelegramStatus.FAILED, 0) + progress.get(TelegramStatus.INTERRUPTED, 0)
            ),
        )
        addenda = await self._admin.addenda()
        if addenda:
            text += "\n\n" + self._say(language, "admin.addenda.title")
        for addendum in addenda[-self._settings.admin_list_limit :]:
            text += "\n" + self._say(
                language, "admin.addenda.line", seq=str(addendum["seq"]),
                when=self._local(datetime.fromisoformat(addendum["at"])),
                replaced=addendum["replaced"],
                reason=self._say(language, f"replacement.{addendum['reason']}"),
                promoted=addendum["promoted"] or self._say(language, "admin.addenda.nobody"),
            )  # fmt: skip
        if addenda:
            text += "\n" + self._say(language, "admin.addenda.head", hash=record_hash(addenda[-1]))
        meeting = await self._meetings.meeting()
        if meeting:
            text += "\n\n" + self._say(
                language,
                "admin.meeting.current",
                when=self._local(meeting.starts_at),
                details=meeting.details,
            )
        await self._messenger.send(admin_id, Reply(text))
        record = await self._admin.draw()
        if record is not None and record.certificate is not None:
            # Always at hand, to publish again, or if it was lost with a crash after the draw.
            certificate = json.dumps(record.certificate, indent=2).encode()
            caption = self._say(language, "admin.draw.certificate")
            await self._messenger.send_document(admin_id, CERTIFICATE_FILE, certificate, caption)
        if addenda:
            content = json.dumps(addenda, indent=2, ensure_ascii=False).encode()
            caption = self._say(language, "admin.addenda.file")
            await self._messenger.send_document(admin_id, ADDENDA_FILE, content, caption)

    # Figures and lists.

    async def _stats(self, admin_id: int, language: str, argument: str) -> None:
        """Sends the funnel, engagement, areas, départements, emails, and a chart."""
        await self._audit(admin_id, "stats", "")
        stats = await self._storage.reports.statistics()
        emails = await self._storage.outbox.counts()
        erased = await self._store.count("erased.complete") + await self._store.count(
            "erased.incomplete"
        )
        engaged = ", ".join(
            f"{self._say(language, f'engage.action.{a}')} {n}" for a, n in stats.engaged.items()
        )
        areas = (
            ", ".join(f"{self._say(language, f'area.{a}')} {n}" for a, n in stats.by_area.items())
            or "—"
        )
        departements = (
            ", ".join(f"{d} {n}" for d, n in list(stats.by_departement.items())[:15]) or "—"
        )
        text = self._say(
            language, "admin.stats", started=str(stats.started), completed=str(stats.completed),
            confirmed=str(stats.confirmed), eligible=str(stats.eligible), engaged=engaged,
            invited=str(stats.friends_invited), joined=str(stats.friends_joined), areas=areas,
            departements=departements, sent=str(emails.get("sent", 0)),
            pending=str(emails.get("pending", 0) + emails.get("sending", 0)),
            failed=str(emails.get("failed", 0) + emails.get("interrupted", 0)),
            erased=str(erased),
        )  # fmt: skip
        await self._messenger.send(admin_id, Reply(text))
        # matplotlib takes a second to import: only when a chart is asked for.
        from bot.admin.charts import stats_chart

        titles = (
            self._say(language, "admin.chart.per_day"),
            self._say(language, "admin.chart.funnel"),
        )
        labels = tuple(
            self._say(language, f"admin.chart.{k}")
            for k in ("started", "completed", "confirmed", "eligible")
        )
        await self._messenger.send_photo(admin_id, stats_chart(stats, titles, labels), titles[1])

    async def _export(self, admin_id: int, language: str, argument: str) -> None:
        """Sends the confirmed participants as a CSV file, written row by row to a temporary
        file (gzipped when larger than Telegram takes), so memory stays flat."""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "participants.csv"
            rows = await write_export(self._storage, path)
            await self._audit(admin_id, "export", f"{rows} rows")
            if path.stat().st_size > self._settings.export_document_max_bytes:
                path = gzipped(path)
            await self._messenger.send_document(
                admin_id, path.name, path.read_bytes(), self._say(language, "admin.export")
            )

    async def _questions(self, admin_id: int, language: str, argument: str) -> None:
        """Lists the questions for the candidate, newest first, with postcodes."""
        asked = await self._storage.reports.questions(self._settings.admin_list_limit)
        await self._audit(admin_id, "questions", f"{len(asked)} shown")
        lines = [f"• {postcode} — {question}" for postcode, question in asked]
        await self._send_lines(admin_id, language, "admin.questions", lines)

    async def _journal(self, admin_id: int, language: str, argument: str) -> None:
        """Lists the latest admin actions."""
        entries = await self._storage.audit.journal(self._settings.admin_list_limit)
        lines = [
            f"{self._local(at)} — {who} — {action} {details}".rstrip()
            for at, who, action, details in entries
        ]
        await self._send_lines(admin_id, language, "admin.journal", lines)

    async def _exclude(self, admin_id: int, language: str, argument: str) -> None:
        """Sets a ticket aside from the draw, before the freeze, with the reason's category
        (public in the certificate) and details (in the audit log only)."""
        categories = tuple(ExclusionReason)
        ticket, _, rest = argument.partition(" ")
        word, _, details = rest.strip().partition(" ")
        reason = self._reason(language, word, categories, "exclusion")
        if not ticket or reason is None:
            await self._reply(admin_id, language, "admin.exclude.usage", reasons=self._reasons(
                language, categories, "exclusion"))  # fmt: skip
            return
        record = await self._admin.draw()
        if record is not None and record.status in FROZEN:
            await self._reply(admin_id, language, "admin.exclude.frozen")
            return
        if not await self._admin.exclude(ticket.upper(), reason):
            again = await self._admin.draw()
            frozen = again is not None and again.status in FROZEN
            key = "admin.exclude.frozen" if frozen else "admin.exclude.unknown"
            await self._reply(admin_id, language, key, ticket=ticket)
            return
        await self._audit(admin_id, "exclude", f"{ticket.upper()} {reason} {details}".rstrip())
        await self._reply(admin_id, language, "admin.exclude.done", ticket=ticket.upper())

    async def _send_lines(
        self, chat_id: int, language: str, title_key: str, lines: list[str]
    ) -> None:
        """Sends a title and lines, split under Telegram's 4,096 characters a message."""
        message = self._say(language, title_key) + "\n"
        if not lines:
            message += self._say(language, "admin.empty")
        for line in lines:
            if len(message) + len(line) + 1 > 4000:
                await self._messenger.send(chat_id, Reply(message))
                message = ""
            message += line[:3900] + "\n"
        await self._messenger.send(chat_id, Reply(message.rstrip()))
