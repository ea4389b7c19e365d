"""The admin tools: the draw and the winners' follow-up, statistics, export, questions, journal.

Admins are the Telegram ids in ADMIN_IDS, in a private chat. For anyone else these commands do
not exist: the conversation answers them like any unknown command.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from bot.drawing import draw_off_loop
from bot.settings import Settings
from conversations.admin import calendar_file, export_csv, parse_meeting, questions, statistics
from conversations.catalogue import Catalogue
from conversations.draw import commitment_of, tickets_sha256, why_ineligible
from conversations.model import Button, Participant, QueueEmail, Reply
from conversations.policy import Travel
from storage.sqlite import SqliteStore
from storage.sqlite_admin import Place, SqliteAdminStore

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
}


class Messenger(Protocol):
    """Sends to any chat: an admin's, or a winner's."""

    async def send(self, chat_id: int, reply: Reply) -> None: ...

    async def send_document(
        self, chat_id: int, filename: str, content: bytes, caption: str
    ) -> None: ...

    async def send_photo(self, chat_id: int, content: bytes, caption: str) -> None: ...


class AdminService:
    def __init__(
        self,
        store: SqliteStore,
        texts: Catalogue,
        settings: Settings,
        clock: Callable[[], datetime],
        messenger: Messenger,
        mail_queued: Callable[[], None],
    ) -> None:
        self._store = store
        self._admin = SqliteAdminStore(store)
        self._texts = texts
        self._settings = settings
        self._clock = clock
        self._messenger = messenger
        self._mail_queued = mail_queued
        self._zone = ZoneInfo(settings.meeting_timezone)
        self._respond_within = timedelta(hours=settings.winner_response_hours)

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
        await self._admin.log(admin_id, action, details, self._clock())

    def _local(self, moment: datetime) -> str:
        return moment.astimezone(self._zone).strftime("%d/%m/%Y %H:%M")

    async def command(self, admin_id: int, language: str, name: str, argument: str) -> None:
        """Runs an admin command; the caller has checked that the sender is an admin."""
        handler = getattr(self, f"_{ADMIN_COMMANDS[name]}")
        await handler(admin_id, language, argument.strip())

    # The draw.

    async def _draw(self, admin_id: int, language: str, argument: str) -> None:
        """Commits a seed, or previews a draw with confirm and cancel buttons."""
        words = argument.split()
        if words == ["commit"]:
            await self._commit(admin_id, language)
            return
        try:
            winners = int(words[0]) if words else self._settings.winners
            reserves = int(words[1]) if len(words) > 1 else self._settings.reserves
        except ValueError:
            winners = reserves = -1
        if (
            len(words) > 2
            or winners < 1
            or reserves < 0
            or winners + reserves > self._settings.draw_max_places
        ):
            await self._reply(
                admin_id, language, "admin.draw.usage", max=str(self._settings.draw_max_places)
            )
            return
        record = await self._admin.draw()
        if record and record.status in ("pending", "done"):
            await self._reply(admin_id, language, f"admin.draw.already_{record.status}")
            return
        people = await self._store.all_participants()
        tickets = sorted(p.ticket for p in people if p.ticket and why_ineligible(p) is None)
        if not tickets:
            await self._reply(admin_id, language, "admin.draw.no_tickets")
            return
        digest = tickets_sha256(tickets)
        if not await self._admin.prepare(
            tickets, digest, winners, reserves, admin_id, self._clock()
        ):
            await self._reply(admin_id, language, "admin.draw.already_pending")
            return
        await self._audit(admin_id, "draw.preview", f"{len(tickets)} tickets, sha256 {digest}")
        text = self._say(
            language,
            "admin.draw.preview",
            count=str(len(tickets)),
            sha256=digest,
            winners=str(winners),
            reserves=str(reserves),
            commitment=record.commitment if record and record.commitment else "—",
        )
        buttons = (
            (Button(self._say(language, "admin.button.confirm_draw"), "admin.draw.confirm"),),
            (Button(self._say(language, "admin.button.cancel_draw"), "admin.draw.cancel"),),
        )
        await self._messenger.send(admin_id, Reply(text, buttons))

    async def _commit(self, admin_id: int, language: str) -> None:
        """Keeps a secret seed for the coming draw and shows only its SHA-256, to publish."""
        seed = secrets.token_bytes(32)
        commitment = commitment_of(seed)
        if not await self._admin.commit_seed(seed.hex(), commitment, self._clock()):
            await self._reply(admin_id, language, "admin.draw.commit_too_late")
            return
        await self._audit(admin_id, "draw.commit", commitment)
        await self._reply(admin_id, language, "admin.draw.committed", commitment=commitment)

    async def press(self, admin_id: int, language: str, key: str) -> None:
        """Confirms or cancels the pending draw."""
        if key == "admin.draw.confirm":
            await self._confirm_draw(admin_id, language)
        elif key == "admin.draw.cancel":
            cancelled = await self._admin.cancel(self._clock())
            if cancelled:
                await self._audit(admin_id, "draw.cancel", "")
            await self._reply(
                admin_id,
                language,
                "admin.draw.cancelled" if cancelled else "admin.draw.nothing_pending",
            )
        else:
            await self._reply(admin_id, language, "remind.stale_button")

    async def _confirm_draw(self, admin_id: int, language: str) -> None:
        record = await self._admin.draw()
        if record is None or record.status != "pending":
            key = (
                "admin.draw.already_done"
                if record and record.status == "done"
                else "admin.draw.nothing_pending"
            )
            await self._reply(admin_id, language, key)
            return
        if self._settings.draw_requires_second_admin and record.requested_by == admin_id:
            await self._reply(admin_id, language, "admin.draw.second_admin")
            return
        seed = bytes.fromhex(record.seed) if record.seed else secrets.token_bytes(32)
        now = self._clock()
        assert record.winners is not None and record.reserves is not None
        certificate = await draw_off_loop(
            seed, record.tickets, record.winners, record.reserves, now, record.commitment
        )
        owners = {p.ticket: p.user_id for p in await self._store.all_participants() if p.ticket}
        deadline = now + self._respond_within
        places = [
            Place(ticket, rank, "winner", "notified", owners.get(ticket), deadline)
            for rank, ticket in enumerate(certificate.winners, 1)
        ] + [
            Place(ticket, rank, "reserve", "waiting", owners.get(ticket), None)
            for rank, ticket in enumerate(certificate.reserves, len(certificate.winners) + 1)
        ]
        if not await self._admin.finish(certificate.to_json(), places, now):
            await self._reply(admin_id, language, "admin.draw.already_done")
            return
        await self._audit(admin_id, "draw.done", f"seed {certificate.seed}")
        content = json.dumps(certificate.to_json(), indent=2).encode()
        caption = self._say(language, "admin.draw.certificate")
        await self._messenger.send_document(admin_id, "certificat-tirage.json", content, caption)
        await self._messenger.send(admin_id, Reply(await self._result_text(language, places)))
        for place in places:
            if place.role == "winner":
                await self._notify_winner(place)

    async def _result_text(self, language: str, places: list[Place]) -> str:
        people = {p.user_id: p for p in await self._store.all_participants()}
        lines = [self._say(language, "admin.draw.result")]
        for place in places:
            person = people.get(place.user_id) if place.user_id else None
            lines.append(self._place_line(language, place, person))
        return "\n".join(lines)

    def _place_line(self, language: str, place: Place, person: Participant | None) -> str:
        role = self._say(language, f"admin.role.{place.role}")
        status = self._say(language, f"place.{place.status}")
        head = f"{place.rank}. {place.ticket} — {role}"
        if person is None:
            return f"{head} — {self._say(language, 'admin.erased')} — {status}"
        area = self._say(language, f"area.{person.area}") if person.area else "—"
        who = f"{person.first_name} {person.last_name}, {person.postcode} ({area})"
        return f"{head} — {who} — {self._travel(language, person)} — {status}"

    def _travel(self, language: str, person: Participant) -> str:
        area = person.entry.area if person.entry else person.area
        travel = self._settings.travel.get(area, Travel.NONE) if area else Travel.NONE
        return self._say(language, f"travel.{travel}")

    # Winners.

    async def _notify_winner(self, place: Place) -> None:
        """Tells a winner, by Telegram and by email, with a deadline to accept or decline."""
        person = await self._store.load(place.user_id) if place.user_id else None
        if person is None or person.entry is None:
            if await self._admin.update_place(place, "replaced", self._clock()):
                await self._tell_admins("admin.winner_gone", ticket=place.ticket)
                await self._promote()
            return
        assert place.deadline is not None
        language, deadline = person.language, self._local(place.deadline)
        travel = self._travel(language, person)
        if self._settings.travel.get(person.entry.area) == Travel.TRAIN:
            travel += "\n" + self._say(language, "winner.train_how")
        text = self._say(
            language, "winner.notify", first_name=person.first_name or "", ticket=place.ticket,
            deadline=deadline, travel=travel,
        )  # fmt: skip
        buttons = (
            (Button(self._say(language, "button.accept"), "win.accept"),),
            (Button(self._say(language, "button.decline"), "win.decline"),),
        )
        await self._messenger.send(person.user_id, Reply(text, buttons))
        params = (
            ("first_name", person.first_name or ""), ("ticket", place.ticket),
            ("deadline", deadline), ("travel", travel),
        )  # fmt: skip
        # To the confirmed address, never one the person typed since.
        email = QueueEmail("winner", person.entry.email, language, params, f"winner:{place.ticket}")
        await self._admin.queue_email(email, person.user_id, self._clock())
        self._mail_queued()

    async def _promote(self) -> None:
        """Makes the first waiting reserve a winner and tells them; admins are told."""
        for place in await self._admin.places():
            if place.role != "reserve" or place.status != "waiting":
                continue
            deadline = self._clock() + self._respond_within
            if await self._admin.update_place(place, "notified", self._clock(), "winner", deadline):
                await self._tell_admins("admin.promoted", ticket=place.ticket, rank=str(place.rank))
                await self._notify_winner(
                    replace(place, role="winner", status="notified", deadline=deadline)
                )
                return
        await self._tell_admins("admin.no_reserve_left")

    async def winner_answer(self, user_id: int, key: str) -> None:
        """Records a winner's acceptance or refusal; a refusal promotes the next reserve."""
        person = await self._store.load(user_id)
        language = person.language if person else self._texts.default_language
        now = self._clock()
        mine = [
            p for p in await self._admin.places() if p.user_id == user_id and p.role == "winner"
        ]
        pending = [p for p in mine if p.status == "notified"]
        late = any(p.status == "expired" for p in mine) or any(
            p.deadline and now > p.deadline for p in pending
        )
        if late:
            await self._reply(user_id, language, "winner.too_late")
            return
        if not pending or key not in ("win.accept", "win.decline"):
            await self._reply(user_id, language, "winner.no_answer_expected")
            return
        place = pending[0]
        accepted = key == "win.accept"
        if not await self._admin.update_place(place, "accepted" if accepted else "declined", now):
            await self._reply(user_id, language, "winner.no_answer_expected")
            return
        await self._tell_admins(
            "admin.accepted" if accepted else "admin.declined", ticket=place.ticket
        )
        if accepted:
            await self._reply(user_id, language, "winner.accepted")
            meeting = await self._admin.meeting()
            if meeting:
                await self._send_meeting(
                    user_id, language, meeting.starts_at, meeting.details, "winner.meeting"
                )
        else:
            await self._reply(user_id, language, "winner.declined")
            await self._promote()

    async def tick(self) -> None:
        """Expires unanswered winners, promoting reserves, and sends the meeting's reminder."""
        now = self._clock()
        for place in await self._admin.places():
            overdue = (
                place.status == "notified" and place.deadline is not None and now > place.deadline
            )
            if overdue and await self._admin.update_place(place, "expired", now):
                await self._tell_admins("admin.expired", ticket=place.ticket)
                await self._promote()
        meeting = await self._admin.meeting()
        if (
            meeting
            and meeting.reminded_at is None
            and meeting.starts_at - timedelta(days=1) <= now < meeting.starts_at
            and await self._admin.mark_reminded(now)
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
            if place.status == "accepted" and place.user_id:
                person = await self._store.load(place.user_id)
                if person:
                    await self._send_meeting(
                        place.user_id, person.language, starts_at, details, key
                    )
                    sent += 1
        return sent

    async def _replace(self, admin_id: int, language: str, argument: str) -> None:
        """Replaces a winner by hand (unreachable, say) with the next reserve."""
        place = next((p for p in await self._admin.places() if p.ticket == argument.upper()), None)
        if place is None or place.role != "winner" or place.status not in ("notified", "accepted"):
            await self._reply(admin_id, language, "admin.replace.not_a_winner", ticket=argument)
            return
        if await self._admin.update_place(place, "replaced", self._clock()):
            await self._audit(admin_id, "winner.replace", place.ticket)
            await self._reply(admin_id, language, "admin.replace.done", ticket=place.ticket)
            await self._promote()

    async def _meeting(self, admin_id: int, language: str, argument: str) -> None:
        """Sets or changes the coffee's date, time and details; accepted winners are told."""
        if not argument:
            meeting = await self._admin.meeting()
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
        starts_at, details = parsed
        changed = await self._admin.meeting() is not None
        await self._admin.set_meeting(starts_at, details, self._clock())
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
        meeting = await self._admin.meeting()
        if meeting:
            text += "\n\n" + self._say(
                language,
                "admin.meeting.current",
                when=self._local(meeting.starts_at),
                details=meeting.details,
            )
        await self._messenger.send(admin_id, Reply(text))

    # Figures and lists.

    async def _stats(self, admin_id: int, language: str, argument: str) -> None:
        """Sends the funnel, engagement, areas, départements, emails, and a chart."""
        await self._audit(admin_id, "stats", "")
        stats = statistics(await self._store.all_participants())
        emails = await self._store.outbox_counts()
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
        from bot.charts import stats_chart

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
        """Sends the confirmed participants as a CSV file."""
        content = export_csv(await self._store.all_participants())
        rows = content.count(b"\n") - 1
        await self._audit(admin_id, "export", f"{rows} rows")
        await self._messenger.send_document(
            admin_id, "participants.csv", content, self._say(language, "admin.export")
        )

    async def _questions(self, admin_id: int, language: str, argument: str) -> None:
        """Lists the questions for the candidate, newest first, with postcodes."""
        asked = questions(await self._store.all_participants())[: self._settings.admin_list_limit]
        await self._audit(admin_id, "questions", f"{len(asked)} shown")
        lines = [f"• {postcode} — {question}" for postcode, question in asked]
        await self._send_lines(admin_id, language, "admin.questions", lines)

    async def _journal(self, admin_id: int, language: str, argument: str) -> None:
        """Lists the latest admin actions."""
        entries = await self._admin.journal(self._settings.admin_list_limit)
        lines = [
            f"{self._local(at)} — {who} — {action} {details}".rstrip()
            for at, who, action, details in entries
        ]
        await self._send_lines(admin_id, language, "admin.journal", lines)

    async def _exclude(self, admin_id: int, language: str, argument: str) -> None:
        """Sets a ticket aside from the draw, with the reason."""
        ticket, _, reason = argument.partition(" ")
        if not ticket or not reason.strip():
            await self._reply(admin_id, language, "admin.exclude.usage")
            return
        if not await self._admin.exclude(ticket.upper(), reason.strip()):
            await self._reply(admin_id, language, "admin.exclude.unknown", ticket=ticket)
            return
        await self._audit(admin_id, "exclude", f"{ticket.upper()} {reason.strip()}")
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
