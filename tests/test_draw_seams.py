"""Seams an attacker's review of the entries, the phases and the draw found, as regressions."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from telegram import Update

from bot.admin.draw_flow import DrawFlow
from bot.bootstrap import open_migrated_storage
from bot.settings import Settings
from conversations.confirmation import digest
from conversations.model import (
    Area,
    Command,
    Confirmation,
    InviteFriends,
    Press,
    RecordConsent,
    Step,
    Text,
)
from conversations.phases import OperationState
from conversations.policy import Context, Travel
from conversations.signup import step
from storage.draws import DrawStore
from tests.conftest import NOW
from tests.factories import entered
from tests.fake_beacon import running_drand
from tests.telegram_fakes import FakeBotApi, Updates, running_bot
from tests.test_admin import ADMIN, admin_settings, certificates, draw_at, until, winner_chats
from tests.test_confirmation import completed
from tests.test_draw_results import results_told, seed_areas
from tests.test_mail import Clock
from tests.test_signup import run


def test_monticket_does_not_tell_an_excluded_entrant_that_their_ticket_was_not_drawn(
    ctx: Context,
) -> None:
    # An admin excluded the ticket before the freeze (it never was in the list); after the
    # draw, /monticket says "le tirage a eu lieu et votre ticket … n'a pas été tiré".
    excluded = entered(1, excluded_reason="staff")
    drawn = replace(ctx, operation=OperationState(closed_at=ctx.now, drawn=True))
    text = step(excluded, Command("monticket"), drawn).replies[0].text
    assert "n'a pas été tiré" not in text
    assert "écarté" in text


def test_no_friend_is_invited_to_join_once_entries_are_closed(ctx: Context) -> None:
    # After the draw, /modifier → Amis → a new friend → confirm queues an invitation saying
    # "Pour participer, ouvrez ce lien" (and spends that address's one invitation for ever).
    confirmed = run(completed(ctx), ctx, Command("start", "c_" + "Tok3n-for_the-tests-22"))
    assert confirmed.entry is not None and confirmed.entry.ticket
    drawn = replace(ctx, operation=OperationState(closed_at=ctx.now, drawn=True))
    state = run(confirmed, drawn, Command("modifier"), Press("edit.friends"))
    state = run(state, drawn, Press("friends.add"), Text("nouvel.ami@free.fr"))
    state = run(state, drawn, Press("friends.done"))
    outcome = step(state, Press("summary.confirm"), drawn)
    assert not [e for e in outcome.effects if isinstance(e, InviteFriends)]


async def _chain_of_three_then(settings: Settings, *statements: tuple[str, tuple]) -> None:
    store = await open_migrated_storage(settings, Clock())
    try:
        admin = store.audit
        for n in range(3):
            await admin.log(ADMIN, "exclude", f"TK{n} staff", NOW + timedelta(minutes=n))
        await store.database.run(list(statements))
    finally:
        await store.close()


async def test_audit_verify_refuses_an_unchained_entry_dated_after_the_chain(
    settings: Settings, tmp_path: Path
) -> None:
    # A forged row without seq is taken as "from before the chain existed", though dated after
    # it (and shown by /journal among the others): verify exits 0.
    from tests.test_audit import audit_verify

    forged = (
        "INSERT INTO audit_log (at, admin_id, action, details) VALUES (?, ?, ?, ?)",
        ((NOW + timedelta(hours=1)).isoformat(), 901, "winner.replace", "TK9 injoignable"),
    )
    await _chain_of_three_then(settings, forged)
    code, output = audit_verify(settings, tmp_path)
    assert code != 0, output


LATE_ID, LATE_TOKEN = 50, "Late-token-for-the-tests-1"


async def test_a_ticket_given_while_the_preview_reads_the_list_makes_the_preview_start_again(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /draw reads the list, then commits the secret and writes the audit entry before it
    # freezes: a person opening their link in between gets a ticket. The freeze closes
    # entries, sees the list changed, and asks to preview again; the draw then includes them.
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed_areas(settings, [Area.PROVINCE] * 3)
        store = await open_migrated_storage(settings, clock)
        try:
            late = entered(LATE_ID, phone="+33612349999", entry=None, step=Step.COMPLETE)
            late = replace(
                late,
                confirmation=Confirmation(
                    late.email or "",
                    digest(store.participants.key, LATE_TOKEN),
                    digest(store.participants.key, "111111"),
                    NOW + timedelta(days=1),
                ),
            )
            await store.participants.save(
                late, 0, [RecordConsent(c) for c in late.consents], None, NOW
            )
        finally:
            await store.close()
        api, updates = FakeBotApi(), Updates()
        admin = Updates.user(ADMIN)
        async with running_bot(settings, api, clock) as bot:
            real_entries = DrawStore.entries
            calls = 0

            async def entries_then_a_confirmation(self: DrawStore) -> object:
                nonlocal calls
                calls += 1
                read = await real_entries(self)
                if calls == 1:  # what the event loop may run at this await: another user
                    user = Updates.user(LATE_ID, "Léa")
                    link = updates.text(user, f"/start c_{LATE_TOKEN}")
                    await bot.application.process_update(Update.de_json(link, bot.application.bot))
                return read

            monkeypatch.setattr(DrawStore, "entries", entries_then_a_confirmation)
            await bot.feed(updates.text(admin, "/draw 2"))
            assert "pendant la préparation" in api.texts_to(ADMIN)[-1]
            await draw_at(bot, clock, api, "/draw 2")
            await until(lambda: bool(results_told(api, LATE_ID)))
    assert any("vous participez au tirage" in text for text in api.texts_to(LATE_ID))
    [certificate] = certificates(api)
    assert certificate["tickets"] == 4


async def test_a_winner_who_erases_their_data_is_replaced_without_waiting_for_the_deadline(
    settings: Settings, tmp_path: Path
) -> None:
    # /supprimer by a notified winner leaves the place 'notified' with nobody behind it; the
    # next reserve waits the whole deadline (72 h), and the addendum then says 'expired'.
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed_areas(settings, [Area.PROVINCE] * 3)
        api, updates = FakeBotApi(), Updates()
        async with running_bot(settings, api, clock) as bot:
            await draw_at(bot, clock, api, "/draw 1")
            [certificate] = certificates(api)
            await until(lambda: len(winner_chats(api)) == 1)
            [winner] = winner_chats(api)
            user = Updates.user(winner)
            await bot.feed(updates.text(user, "/supprimer"), updates.press(user, "erase.confirm"))
            clock.advance(60)
            await asyncio.sleep(0.5)  # several ticks
    reserve = int(str(certificate["reserves"][0])[2:])  # type: ignore[index]
    assert reserve in winner_chats(api)


async def test_statut_shows_the_travel_frozen_at_the_draw_not_todays_setting(
    settings: Settings, tmp_path: Path
) -> None:
    # The entitlement is frozen in draw_places and shown so by /gagnants, but /statut (and
    # the summary) recompute it from the entry's area and today's TRAVEL_* settings.
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(
            winners=1, travel_province=Travel.TRAIN
        )
        await seed_areas(settings, [Area.PROVINCE])
        api, updates = FakeBotApi(), Updates()
        async with running_bot(settings, api, clock) as bot:
            await draw_at(bot, clock, api, "/draw 0")
            await until(lambda: len(winner_chats(api)) == 1)
        changed = settings.replace(travel_province=Travel.NONE)
        async with running_bot(changed, api, clock) as bot:
            await bot.feed(
                updates.text(Updates.user(ADMIN), "/gagnants"),
                updates.text(Updates.user(1), "/statut"),
            )
    assert "Aller-retour en train" in api.texts_to(ADMIN)[-1]  # frozen
    assert "Aller-retour en train" in api.texts_to(1)[-1]


async def test_a_crash_just_after_the_draw_commits_still_gets_the_certificate_to_the_admins(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DrawFlow._draw commits the result (finish), then logs draw.done, then sends the
    # certificate, then _drawn tells admins and replaces erased winners. A kill -9 after the
    # commit: after the restart the draw is 'done', nothing sends the certificate again (not
    # /gagnants, not /draw, which says it took place), and the audit log has no draw.done.
    clock = Clock(NOW)
    async with running_drand(clock) as drand:
        settings = admin_settings(settings, tmp_path, drand).replace(winners=1)
        await seed_areas(settings, [Area.PROVINCE] * 3)
        api, updates = FakeBotApi(), Updates()
        admin = Updates.user(ADMIN)
        real_finish = DrawStore.finish

        async def finish_then_die(self: DrawStore, *args: object) -> bool:
            await real_finish(self, *args)  # type: ignore[arg-type]
            raise asyncio.CancelledError

        async def dead(self: DrawFlow) -> None:
            """The process is gone: nothing after the commit runs in it."""

        # Only these two are undone after the crash (monkeypatch.undo() would also undo the
        # conftest's working directory and environment, and the bot would restart elsewhere).
        with monkeypatch.context() as crash:
            crash.setattr(DrawStore, "finish", finish_then_die)
            crash.setattr(DrawFlow, "after_draw", dead)
            async with running_bot(settings, api, clock) as bot:
                await bot.feed(
                    updates.text(admin, "/draw 1"), updates.press(admin, "admin.draw.confirm")
                )
                clock.advance(2)
                await asyncio.sleep(0.3)
        assert certificates(api) == []
        async with running_bot(settings, api, clock) as bot:
            await asyncio.sleep(0.3)
            await bot.feed(updates.text(admin, "/gagnants"), updates.text(admin, "/draw"))
    assert "déjà eu lieu" in api.texts_to(ADMIN)[-1]
    assert certificates(api), "the certificate never reached an admin"
