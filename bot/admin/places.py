"""The winners' and reserves' places after the draw, in the shell: a winner's answer, the
deadline, erasures and /remplacer end a place and promote the next reserve; /gagnants lists
them. The rules are pure (conversations/winners.py); each change runs in one transaction with
the public addendum and the messages and email that tell the promoted reserve."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from datetime import datetime

from bot.admin.draw_flow import CERTIFICATE_FILE
from bot.admin.draw_results import DrawResults
from bot.admin.meeting import Meeting
from bot.admin.tools import AdminCommand, AdminJob, AdminTools
from conversations.addenda import BY_HAND, ReplacementReason
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
from storage.ports import TelegramStatus

ADDENDA_FILE = "avenants-tirage.json"


class Places(AdminJob):
    def __init__(
        self,
        tools: AdminTools,
        results: DrawResults,
        meeting: Meeting,
        mail_queued: Callable[[], None],
        telegram_queued: Callable[[], None],
    ) -> None:
        self._tools = tools
        self._results = results
        self._meeting = meeting
        self._mail_queued = mail_queued
        self._telegram_queued = telegram_queued
        self._draws = tools.storage.draws
        self._participants = tools.storage.participants
        # Replacements one at a time: each addendum names the one before it.
        self._replacing = asyncio.Lock()

    def commands(self) -> Mapping[str, AdminCommand]:
        return {
            "remplacer": self.replace,
            "replace": self.replace,
            "gagnants": self.winners,
            "winners": self.winners,
        }

    async def drawn(self, places: list[Place]) -> None:
        """Tells the admins the result; the entrants' messages were queued with it."""
        self._telegram_queued()
        self._mail_queued()
        for admin_id in sorted(self._tools.settings.admin_ids):
            text = await self._result_text(self._tools.texts.default_language, places)
            await self._tools.messenger.send(admin_id, Reply(text))
        # Winners erased since the freeze are replaced by the next tick.

    async def _still_entered(self, place: Place) -> bool:
        person = await self._participants.load(place.user_id) if place.user_id else None
        return person is not None and person.entry is not None

    async def _result_text(self, language: str, places: list[Place]) -> str:
        lines = [self._tools.say(language, "admin.draw.result")]
        for place in places:
            person = await self._participants.load(place.user_id) if place.user_id else None
            lines.append(self._place_line(language, place, person))
        return "\n".join(lines)

    def _place_line(self, language: str, place: Place, person: Participant | None) -> str:
        say = self._tools.say
        role = say(language, f"admin.role.{place.role}")
        status = say(language, f"place.{place.status}")
        head = f"{place.rank}. {place.ticket} — {role}"
        if person is None:
            return f"{head} — {say(language, 'admin.erased')} — {status}"
        # The area and travel frozen at the draw, whatever the person edited since.
        area = say(language, f"area.{place.area}") if place.area else "—"
        postcode = person.entry.postcode if person.entry else person.postcode
        who = f"{person.first_name} {person.last_name}, {postcode} ({area})"
        travel = say(language, f"travel.{place.travel or Travel.NONE}")
        return f"{head} — {who} — {travel} — {status}"

    async def _replace_winner(
        self, ended: PlaceChange, reason: ReplacementReason, unblock: int | None = None
    ) -> bool:
        """Ends a winner's place and promotes the next reserve, in one transaction with the
        public addendum and the messages and email telling the new winner; False when the
        place changed meanwhile. A promoted reserve erased since is replaced in turn."""
        async with self._replacing:
            record = await self._draws.draw()
            if record is None or record.certificate is None:
                return False
            now = self._tools.clock()
            change = replacement(
                ended,
                reason,
                await self._draws.places(),
                record.certificate,
                await self._draws.addenda(),
                self._results.respond_by(now),
                now,
            )
            promoted = change.promoted
            notice = await self._results.promotion_statements(promoted, now) if promoted else []
            if not await self._draws.replace_winner(
                ended.place,
                ended.status,
                change.reserve,
                promoted.deadline if promoted and promoted.deadline else now,
                change.addendum,
                now,
                notice or [],
                unblock,
            ):
                return False
        tell_admins = self._tools.tell_admins
        if promoted is None:
            await tell_admins("admin.no_reserve_left")
            return True
        await tell_admins("admin.promoted", ticket=promoted.ticket, rank=str(promoted.rank))
        if notice is None:
            if await self._replace_winner(
                PlaceChange(promoted, PlaceStatus.REPLACED), ReplacementReason.ERASED
            ):
                await tell_admins("admin.winner_gone", ticket=promoted.ticket)
            return True
        self._telegram_queued()
        self._mail_queued()
        return True

    async def winner_answer(self, user_id: int, key: str) -> None:
        """Records a winner's acceptance or refusal; a refusal promotes the next reserve."""
        tools = self._tools
        person = await self._participants.load(user_id)
        language = person.language if person else tools.texts.default_language
        # The press is the person writing to the bot: a mark that they blocked it goes in the
        # answer's own transaction (read with their row, written only when it is there).
        unblock = user_id if person is not None and person.blocked else None
        decided = answer(await self._draws.places(), user_id, key, tools.clock())
        if isinstance(decided, Refused):
            await self._unblock(unblock)
            await tools.reply(user_id, language, decided.text_key)
            return
        place, accepted = decided.place, decided.status == PlaceStatus.ACCEPTED
        if accepted:
            changed = await self._draws.update_place(
                place, decided.status, tools.clock(), unblock=unblock
            )
        else:
            changed = await self._replace_winner(decided, ReplacementReason.DECLINED, unblock)
        if not changed:
            await self._unblock(unblock)
            await tools.reply(user_id, language, "winner.no_answer_expected")
            return
        await tools.tell_admins(
            "admin.accepted" if accepted else "admin.declined", ticket=place.ticket
        )
        if accepted:
            await tools.reply(user_id, language, "winner.accepted")
            await self._meeting.send_to_winner(user_id, language)
        else:
            await tools.reply(user_id, language, "winner.declined")

    async def _unblock(self, user_id: int | None) -> None:
        """A press that changed no place still clears the person's blocked mark."""
        if user_id is not None:
            await self._participants.mark_processed(None, self._tools.clock(), unblock=user_id)

    async def follow_up(self) -> None:
        """Replaces winners erased since (at once) and winners who let the deadline pass."""
        for place in await self._draws.places():
            if place.role != Role.WINNER or place.status not in (
                PlaceStatus.NOTIFIED,
                PlaceStatus.ACCEPTED,
            ):
                continue
            # Erased: the next reserve need not wait for a deadline nobody will meet.
            if not await self._still_entered(place) and await self._replace_winner(
                PlaceChange(place, PlaceStatus.REPLACED), ReplacementReason.ERASED
            ):
                await self._tools.tell_admins("admin.winner_gone", ticket=place.ticket)
        for expired in overdue(await self._draws.places(), self._tools.clock()):
            if await self._replace_winner(expired, ReplacementReason.EXPIRED):
                await self._tools.tell_admins("admin.expired", ticket=expired.place.ticket)

    async def replace(self, admin_id: int, language: str, argument: str) -> None:
        """Replaces a winner by hand (unreachable, say) with the next reserve, for a reason."""
        tools = self._tools
        ticket, _, rest = argument.partition(" ")
        word, _, details = rest.strip().partition(" ")
        reason = tools.reason(language, word, BY_HAND, "replacement")
        if not ticket or reason is None:
            await tools.reply(admin_id, language, "admin.replace.usage", reasons=tools.reasons(
                language, BY_HAND, "replacement"))  # fmt: skip
            return
        place = next((p for p in await self._draws.places() if p.ticket == ticket.upper()), None)
        refusal = replaceable(place)
        if refusal is not None or place is None:
            shown = place.ticket if place is not None else ticket
            await tools.reply(admin_id, language, refusal or "", ticket=shown)
            return
        ended = PlaceChange(place, PlaceStatus.REPLACED)
        if await self._replace_winner(ended, ReplacementReason(reason)):
            await tools.audit(
                admin_id,
                "winner.replace",
                f"{place.ticket} {reason}",
                details.strip(),
                place.ticket,
            )
            await tools.reply(admin_id, language, "admin.replace.done", ticket=place.ticket)

    async def winners(self, admin_id: int, language: str, argument: str) -> None:
        """Lists winners and reserves with their status, the replacements, and the meeting;
        sends the certificate and the addenda."""
        tools, say = self._tools, self._tools.say
        limit = tools.settings.admin_list_limit
        await tools.audit(admin_id, "winners", "")
        places = await self._draws.places()
        if not places:
            await tools.reply(admin_id, language, "admin.winners.none")
            return
        text = await self._result_text(language, places[:limit])
        progress = await tools.storage.telegram.progress(BATCH)
        text += "\n\n" + say(
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
        addenda = await self._draws.addenda()
        if addenda:
            text += "\n\n" + say(language, "admin.addenda.title")
        for addendum in addenda[-limit:]:
            text += "\n" + say(
                language, "admin.addenda.line", seq=str(addendum["seq"]),
                when=tools.local(datetime.fromisoformat(addendum["at"])),
                replaced=addendum["replaced"],
                reason=say(language, f"replacement.{addendum['reason']}"),
                promoted=addendum["promoted"] or say(language, "admin.addenda.nobody"),
            )  # fmt: skip
        if addenda:
            text += "\n" + say(language, "admin.addenda.head", hash=record_hash(addenda[-1]))
        meeting = await tools.storage.meetings.meeting()
        if meeting:
            text += "\n\n" + say(
                language,
                "admin.meeting.current",
                when=tools.local(meeting.starts_at),
                details=meeting.details,
            )
        await tools.messenger.send(admin_id, Reply(text))
        record = await self._draws.draw()
        if record is not None and record.certificate is not None:
            # Always at hand, to publish again, or if it was lost with a crash after the draw.
            certificate = json.dumps(record.certificate, indent=2).encode()
            caption = say(language, "admin.draw.certificate")
            await tools.messenger.send_document(admin_id, CERTIFICATE_FILE, certificate, caption)
        if addenda:
            content = json.dumps(addenda, indent=2, ensure_ascii=False).encode()
            caption = say(language, "admin.addenda.file")
            await tools.messenger.send_document(admin_id, ADDENDA_FILE, content, caption)
