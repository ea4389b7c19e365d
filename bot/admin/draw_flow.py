"""The draw, step by step: a committed secret, the frozen list, an admin's confirmation, then the
public beacon published after the freeze; only then the draw, which nobody could foresee.

A cancellation is refused once the beacon may be public, so that nobody can see a result coming
and start again. Without the beacon the draw waits: it never happens without one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.admin.beacon import BeaconUnavailable, fetch_drand
from bot.admin.draw_results import DrawResults
from bot.admin.drawing import draw_off_loop
from bot.settings import Settings
from conversations.draw import Beacon, BeaconSource, FrozenDraw, commitment_of, tickets_sha256
from conversations.model import Button, Reply, Travel
from conversations.phases import Phase, phase_at
from conversations.winners import Place, PlaceStatus, Role
from storage import Storage
from storage.draws import DrawRecord, DrawStatus
from storage.leadership import Lock

log = logging.getLogger(__name__)

CERTIFICATE_FILE = "certificat-tirage.json"


@dataclass(frozen=True)
class DrawTools:
    """What the draw borrows from the admin service around it."""

    say: Callable[..., str]
    reply: Callable[..., Awaitable[None]]
    send: Callable[[int, Reply], Awaitable[None]]
    send_document: Callable[[int, str, bytes, str], Awaitable[None]]
    audit: Callable[[int, str, str], Awaitable[None]]
    local: Callable[[datetime], str]
    # Called with the places once drawn: tells admins and winners.
    drawn: Callable[[list[Place]], Awaitable[None]]


class DrawFlow:
    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        clock: Callable[[], datetime],
        tools: DrawTools,
        default_language: str,
        results: DrawResults,
    ) -> None:
        self._admin = storage.draws
        self._storage = storage
        self._results = results
        self._settings = settings
        self._clock = clock
        self._tools = tools
        self._language = default_language
        # The retry button and the periodic tick never draw at the same time.
        self._drawing = asyncio.Lock()

    async def command(self, admin_id: int, language: str, argument: str) -> None:
        """`/draw commit`, `/draw beacon VALUE`, or `/draw [winners] [reserves]`."""
        word, _, rest = argument.partition(" ")
        if word == "commit" and not rest:
            await self._commit(admin_id, language)
        elif word == "beacon":
            await self._propose_beacon(admin_id, language, rest.strip())
        else:
            await self._preview(admin_id, language, argument.split())

    async def _commit(self, admin_id: int, language: str) -> None:
        """Keeps a secret for the coming draw and shows only its SHA-256, to publish."""
        commitment = await self._new_secret(admin_id)
        if commitment is None:
            await self._tools.reply(admin_id, language, "admin.draw.commit_too_late")
            return
        await self._tools.reply(admin_id, language, "admin.draw.committed", commitment=commitment)

    async def _new_secret(self, admin_id: int) -> str | None:
        secret = secrets.token_bytes(32)
        commitment = commitment_of(secret)
        if not await self._admin.commit_secret(secret.hex(), commitment, self._clock()):
            return None
        await self._tools.audit(admin_id, "draw.commit", commitment)
        return commitment

    def _reserves(self, words: list[str]) -> int | None:
        """The reserves asked for; the winners are the number the rules announce (WINNERS)."""
        try:
            reserves = int(words[0]) if words else self._settings.reserves
        except ValueError:
            return None
        if len(words) > 1 or reserves < 0:
            return None
        if self._settings.winners + reserves > self._settings.draw_max_places:
            return None
        return reserves

    async def _preview(self, admin_id: int, language: str, words: list[str]) -> None:
        """Freezes the list, with the exclusions decided so far, and names the beacon to come."""
        reserves = self._reserves(words)
        if reserves is None:
            await self._tools.reply(
                admin_id,
                language,
                "admin.draw.usage",
                max=str(self._settings.draw_max_places - self._settings.winners),
                winners=str(self._settings.winners),
            )
            return
        record = await self._admin.draw()
        if record and record.status != DrawStatus.COMMITTED:
            await self._tools.reply(admin_id, language, _already(record.status))
            return
        entries = await self._admin.entries()
        if not entries.tickets:
            await self._tools.reply(admin_id, language, "admin.draw.no_tickets")
            return
        if record is None:
            await self._new_secret(admin_id)
        now = self._clock()
        # The places that can really be filled: not 5 reserves when 2 tickets remain.
        winners = min(self._settings.winners, len(entries.tickets))
        places = (winners, min(reserves, len(entries.tickets) - winners))
        was_open = (
            phase_at(self._settings.calendar, await self._storage.participants.operation(), now)
            == Phase.OPEN
        )
        # Whole seconds, as the drand round is computed the same way by the page's JavaScript.
        not_before = now + timedelta(seconds=self._settings.beacon_delay_seconds)
        if not_before.microsecond:
            not_before = not_before.replace(microsecond=0) + timedelta(seconds=1)
        target: dict[str, Any] = {
            "source": str(self._settings.beacon),
            "not_before": not_before.isoformat(),
        }
        digest = tickets_sha256(entries.tickets)
        if not await self._admin.freeze(entries, digest, places, admin_id, target, now):
            await self._tools.reply(admin_id, language, "admin.draw.already_pending")
            return
        # The freeze closed entries: from now on the list cannot change. If a ticket was given
        # or an exclusion made between reading it and freezing it, start again.
        again = await self._admin.entries()
        if again.tickets != entries.tickets or again.excluded != entries.excluded:
            await self._admin.unfreeze(now)
            await self._tools.reply(admin_id, language, "admin.draw.changed_meanwhile")
            return
        await self._tools.audit(
            admin_id,
            "draw.freeze",
            f"{len(entries.tickets)} tickets, sha256 {digest}, {len(entries.excluded)} excluded,"
            f" beacon {self._settings.beacon} not before {not_before.isoformat()}",
        )
        record = await self._admin.draw()
        assert record is not None
        say = self._tools.say
        text = say(
            language,
            "admin.draw.preview",
            count=str(len(entries.tickets)),
            sha256=digest,
            winners=str(places[0]),
            reserves=str(places[1]),
            commitment=record.commitment or "—",
            excluded=str(len(entries.excluded)),
            beacon=say(
                language,
                f"admin.beacon.{self._settings.beacon}",
                when=self._tools.local(not_before),
            ),
        )
        buttons = (
            (Button(say(language, "admin.button.confirm_draw"), "admin.draw.confirm"),),
            (Button(say(language, "admin.button.cancel_draw"), "admin.draw.cancel"),),
        )
        if was_open:
            text += "\n\n" + say(language, "admin.draw.entries_closed_now")
        shared = await self._admin.shared_phones()
        if shared:
            groups = "\n".join(f"• {', '.join(tickets)}" for tickets in shared)
            text += "\n\n" + say(
                language,
                "admin.draw.shared_phones",
                count=str(len(shared)),
                tickets=str(sum(len(tickets) for tickets in shared)),
                groups=groups,
            )
        await self._tools.send(admin_id, Reply(text, buttons))

    async def cancel(self, admin_id: int, language: str) -> None:
        record = await self._admin.draw()
        if record is None or record.status not in (DrawStatus.PENDING, DrawStatus.CONFIRMED):
            await self._tools.reply(admin_id, language, "admin.draw.nothing_pending")
            return
        if record.status == DrawStatus.CONFIRMED or self._clock() >= _not_before(record):
            # The beacon may be public: cancelling now would let someone redraw until it suits.
            await self._tools.reply(admin_id, language, "admin.draw.cancel_too_late")
            return
        if not await self._admin.unfreeze(self._clock()):
            await self._tools.reply(admin_id, language, "admin.draw.nothing_pending")
            return
        await self._tools.audit(admin_id, "draw.cancel", "")
        await self._tools.reply(admin_id, language, "admin.draw.cancelled")

    async def confirm(self, admin_id: int, language: str) -> None:
        record = await self._admin.draw()
        if record is None or record.status != DrawStatus.PENDING:
            key = "admin.draw.nothing_pending" if record is None else _already(record.status)
            await self._tools.reply(admin_id, language, key)
            return
        if self._settings.second_admin_required and record.requested_by == admin_id:
            await self._tools.reply(admin_id, language, "admin.draw.second_admin")
            return
        if not await self._admin.confirm(admin_id, self._clock()):
            await self._tools.reply(admin_id, language, "admin.draw.nothing_pending")
            return
        await self._tools.audit(admin_id, "draw.confirm", "")
        await self.try_to_draw(admin_id, language)

    async def _propose_beacon(self, admin_id: int, language: str, value: str) -> None:
        """BEACON=manual: an admin pastes a value published after the freeze."""
        record = await self._admin.draw()
        beacon = record.beacon if record else None
        if (
            record is None
            or beacon is None
            or beacon.get("source") != BeaconSource.MANUAL
            or record.status not in (DrawStatus.PENDING, DrawStatus.CONFIRMED)
        ):
            await self._tools.reply(admin_id, language, "admin.beacon.not_expected")
            return
        if not value or len(value) > self._settings.beacon_value_max_length:
            await self._tools.reply(
                admin_id,
                language,
                "admin.beacon.usage",
                max=str(self._settings.beacon_value_max_length),
            )
            return
        if self._clock() < _not_before(record):
            when = self._tools.local(_not_before(record))
            await self._tools.reply(admin_id, language, "admin.beacon.too_early", when=when)
            return
        if beacon.get("confirmed"):
            await self._tools.reply(admin_id, language, "admin.beacon.already_confirmed")
            return
        proposed = {**beacon, "value": value, "proposed_by": admin_id}
        if not await self._admin.set_beacon(beacon, proposed, self._clock()):
            await self._tools.reply(admin_id, language, "admin.beacon.not_expected")
            return
        await self._tools.audit(admin_id, "beacon.propose", value)
        await self._tools.reply(admin_id, language, "admin.beacon.proposed", value=value)
        for other in sorted(self._settings.admin_ids - {admin_id}):
            say = self._tools.say
            button = Button(say(self._language, "admin.button.confirm_beacon"), "admin.beacon.ok")
            text = say(self._language, "admin.beacon.to_confirm", value=value)
            await self._tools.send(other, Reply(text, ((button,),)))

    async def confirm_beacon(self, admin_id: int, language: str) -> None:
        record = await self._admin.draw()
        beacon = record.beacon if record else None
        if record is None or beacon is None or "value" not in beacon or beacon.get("confirmed"):
            await self._tools.reply(admin_id, language, "admin.beacon.nothing_to_confirm")
            return
        if beacon.get("proposed_by") == admin_id:
            await self._tools.reply(admin_id, language, "admin.beacon.second_admin")
            return
        if not await self._admin.set_beacon(beacon, {**beacon, "confirmed": True}, self._clock()):
            await self._tools.reply(admin_id, language, "admin.beacon.nothing_to_confirm")
            return
        await self._tools.audit(admin_id, "beacon.confirm", str(beacon["value"]))
        await self._tools.reply(admin_id, language, "admin.beacon.confirmed")
        await self.try_to_draw(admin_id, language)

    async def try_to_draw(self, admin_id: int | None, language: str) -> None:
        """Draws a confirmed draw once its beacon is known; says why not to `admin_id`, if any.

        One at a time in this process and among replicas: the result is committed once whoever
        tries, but the certificate's sending after it must not be done twice."""
        async with self._drawing, self._storage.database.mutex(Lock.DRAW):
            await self.after_draw()
            record = await self._admin.draw()
            if record is None or record.status != DrawStatus.CONFIRMED:
                if admin_id is not None:
                    key = (
                        "admin.draw.nothing_pending" if record is None else _already(record.status)
                    )
                    await self._tools.reply(admin_id, language, key)
                return
            beacon = await self._beacon(record, admin_id, language)
            if beacon is not None:
                await self._draw(record, beacon)

    async def _beacon(
        self, record: DrawRecord, admin_id: int | None, language: str
    ) -> Beacon | None:
        target = record.beacon or {}
        not_before = _not_before(record)
        if target.get("source") == BeaconSource.MANUAL:
            if target.get("confirmed"):
                return Beacon(BeaconSource.MANUAL, str(target["value"]), str(target["not_before"]))
            if admin_id is not None:
                when = self._tools.local(not_before)
                await self._tools.reply(
                    admin_id, language, "admin.beacon.waiting_manual", when=when
                )
            return None
        try:
            beacon = await fetch_drand(
                self._settings.beacon_url,
                not_before,
                self._clock(),
                self._settings.beacon_timeout_seconds,
            )
        except BeaconUnavailable as error:
            log.info("the draw waits for its beacon: %s", error)
            if admin_id is not None:
                await self._say_waiting(admin_id, language, error)
            return None
        if not await self._admin.set_beacon(target, {**target, **beacon.to_json()}, self._clock()):
            return None
        return beacon

    async def _say_waiting(self, admin_id: int, language: str, error: BeaconUnavailable) -> None:
        say = self._tools.say
        if error.expected_at is not None:
            text = say(language, "admin.beacon.waiting", when=self._tools.local(error.expected_at))
        else:
            text = say(language, "admin.beacon.unreachable", url=self._settings.beacon_url)
        button = Button(say(language, "admin.button.retry_draw"), "admin.draw.retry")
        await self._tools.send(admin_id, Reply(text, ((button,),)))

    async def _draw(self, record: DrawRecord, beacon: Beacon) -> None:
        assert record.secret and record.frozen_at and record.winners is not None
        assert record.reserves is not None
        frozen = FrozenDraw(
            bytes.fromhex(record.secret),
            record.tickets,
            record.winners,
            record.reserves,
            record.frozen_at,
            record.excluded,
        )
        now = self._clock()
        head = await self._storage.audit.head()
        certificate = await draw_off_loop(frozen, beacon, now, head)
        holders = await self._admin.holders([*certificate.winners, *certificate.reserves])
        deadline = self._results.respond_by(now)

        def place(
            ticket: str, rank: int, role: Role, status: PlaceStatus, by: datetime | None
        ) -> Place:
            # The entitlement is frozen here: later edits of postcode or settings change nothing.
            holder = holders.get(ticket)
            area = holder.area if holder else None
            travel = self._settings.travel.get(area, Travel.NONE) if area else None
            user_id = holder.user_id if holder else None
            return Place(ticket, rank, role, status, user_id, by, area, travel)

        places = [
            place(ticket, rank, Role.WINNER, PlaceStatus.NOTIFIED, deadline)
            for rank, ticket in enumerate(certificate.winners, 1)
        ] + [
            place(ticket, rank, Role.RESERVE, PlaceStatus.WAITING, None)
            for rank, ticket in enumerate(certificate.reserves, len(certificate.winners) + 1)
        ]
        announcements = await self._results.statements(places, now)
        if await self._admin.finish(certificate.to_json(), places, now, announcements):
            await self.after_draw()

    async def after_draw(self) -> None:
        """Once the result is committed: the audit entry, the certificate to every admin, the
        readable result. Done again after a crash in between, since the audit entry is its mark;
        the entrants' messages were queued with the result and need nothing here."""
        record = await self._admin.draw()
        if record is None or record.status != DrawStatus.DONE or record.certificate is None:
            return
        if await self._storage.audit.logged("draw.done"):
            return
        certificate = record.certificate
        await self._tools.audit(
            record.confirmed_by or 0, "draw.done", f"seed {certificate['seed']}"
        )
        content = json.dumps(certificate, indent=2).encode()
        caption = self._tools.say(self._language, "admin.draw.certificate")
        for admin_id in sorted(self._settings.admin_ids):
            await self._tools.send_document(admin_id, CERTIFICATE_FILE, content, caption)
        await self._tools.drawn(await self._admin.places())


def _already(status: DrawStatus) -> str:
    return {
        DrawStatus.PENDING: "admin.draw.already_pending",
        DrawStatus.CONFIRMED: "admin.draw.already_confirmed",
        DrawStatus.DONE: "admin.draw.already_done",
        DrawStatus.COMMITTED: "admin.draw.nothing_pending",
    }[status]


def _not_before(record: DrawRecord) -> datetime:
    assert record.beacon is not None
    return datetime.fromisoformat(str(record.beacon["not_before"]))
