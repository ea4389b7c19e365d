"""`coffeebot webhook` as a separate process, pushed to over loopback HTTP the way Telegram
does (tests/webhook_pusher.py), killed with SIGKILL and restarted while people sign up."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.bot_api_server import LocalBotApi
from tests.live import BotProcess, Person, healthy, rows, started
from tests.smtp_server import free_port, smtp_server
from tests.test_console import coffeebot
from tests.test_live import emails_settled, interrupted
from tests.test_webhook import SECRET
from tests.webhook_pusher import WebhookPusher

pytestmark = pytest.mark.slow

PEOPLE = int(os.environ.get("WEBHOOK_TEST_PEOPLE", "50"))
LAST_NAMES = ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand")


@dataclass
class WebhookBot(BotProcess):
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    command = "webhook"

    def settings(self) -> dict[str, str]:
        return {"WEBHOOK_LISTEN": f"127.0.0.1:{self.port}", "WEBHOOK_SECRET": SECRET}

    async def ready(self, polls: int) -> None:
        await healthy(self.url)


@pytest.fixture
async def api() -> AsyncIterator[LocalBotApi]:
    async with started(LocalBotApi()) as server:
        yield server


def script(person: Person) -> list[tuple[str, list[dict[str, Any]]]]:
    """Each input (or burst of messages sent at once), after the words it answers.

    The messages of a burst wait in Telegram's queue for the chat: their replies must come in
    their order. Presses wait in the person's own queue, in theirs."""
    burst = [
        person.text(person.first_name),
        person.text(LAST_NAMES[person.user_id % len(LAST_NAMES)]),
        person.contact(),
        person.text(person.email),
        person.text("69003"),
    ]
    consent = "Avant de commencer"
    return [
        ("", [person.text("/start")]),
        ("Prenez un café", [person.press("welcome.join")]),
        (consent, [person.press(f"consent.{kind}") for kind in ("adult", "processing", "rules")]),
        (consent, [person.press("consent.continue")]),
        ("votre prénom", burst),
        ("Vous pouvez inviter", [person.press("friends.done")]),
        ("aimeriez-vous poser", [person.press("question.skip")]),
        ("Voici votre inscription", [person.press("summary.confirm")]),
        ("e-mail de confirmation part", []),
    ]


async def sign_up(
    person: Person, pusher: WebhookPusher, api: LocalBotApi, patience: float = 60
) -> None:
    """Reads before answering, as a person would, and never writes twice: nothing is lost."""
    seen = 0
    for clue, updates in script(person):
        try:
            await api.wait_for_chat(
                person.user_id,
                lambda s=seen, c=clue: (
                    not c or any(c in t for t in api.texts_to(person.user_id)[s:])
                ),
                patience,
            )
        except AssertionError:
            last = [t[:40] for t in api.texts_to(person.user_id)[-2:]]
            raise AssertionError(
                f"person {person.user_id} waited for {clue!r}, saw {last}; the pusher dropped"
                f" {pusher.dropped}, answers {dict(pusher.answers)}"
            ) from None
        seen = len(api.texts_to(person.user_id))
        for update in updates:
            pusher.push(update)
            person.updates_sent += 1
    person.saw_complete = True


def transcript(api: LocalBotApi, person: Person) -> tuple[list[str], int]:
    """What the person saw, their own answers masked, each message once; and the repeats (a
    reply in flight at a kill is sent again: it may have left)."""
    own = (person.first_name, LAST_NAMES[person.user_id % len(LAST_NAMES)], person.email)
    seen: list[str] = []
    for sent in api.sent[person.user_id]:
        text = sent.params.get("text", "")
        for value in own:
            text = text.replace(value, "…")
        # The phone number, however it is written; the buttons tell the consent screens apart.
        seen.append(re.sub(r"\d", "#", f"{text} {sent.params.get('reply_markup')}"))
    kept = list(dict.fromkeys(seen))
    return kept, len(seen) - len(kept)


async def test_signups_pushed_to_a_webhook_killed_three_times_lose_nothing(
    api: LocalBotApi, tmp_path: Path, database_url: str
) -> None:
    chance = random.Random(2027)
    started = time.monotonic()
    with smtp_server() as (inbox, port):
        bot = WebhookBot(api, tmp_path, {"SMTP_URL": f"smtp://127.0.0.1:{port}",
                         "TELEGRAM_MAX_MESSAGES_PER_SECOND": "10000",
                         "FLOOD_MAX_MESSAGES": "1000"}, database_url=database_url)  # fmt: skip
        registered = await asyncio.to_thread(
            coffeebot, tmp_path, "webhook", "set",
            env={"TELEGRAM_BOT_TOKEN": "123456:LIVE", "TELEGRAM_API_BASE_URL": api.base_url,
                 "WEBHOOK_SECRET": SECRET, "WEBHOOK_URL": f"{bot.url}/telegram"},
        )  # fmt: skip
        assert registered.returncode == 0, registered.stderr
        await bot.start()
        pusher = WebhookPusher([api.webhook["url"]], api.webhook["secret_token"],
                               api.webhook["max_connections"])  # fmt: skip
        await pusher.start()
        people = [Person(api, 2000 + n, first_name="Zoé") for n in range(PEOPLE)]
        signing = asyncio.gather(*(sign_up(person, pusher, api) for person in people))
        kills = []
        for threshold in sorted(chance.sample(range(3, PEOPLE * 12), 3)):
            await api.wait_for(lambda t=threshold: sum(p.updates_sent for p in people) >= t, 60)
            await asyncio.sleep(chance.uniform(0, 0.2))
            await bot.kill()
            kills.append(sum(p.updates_sent for p in people))
            await bot.start()
        await signing
        await api.wait_for(lambda: pusher.pending() == 0)
        await emails_settled(inbox.messages, database_url, PEOPLE)
        await pusher.stop()
        await bot.stop()
    assert bot.process is not None and bot.process.returncode == 0  # SIGTERM: a clean exit

    answers_sql = "SELECT user_id, step, first_name, last_name, phone, email, postcode"
    stored = {
        row[0]: row[1:] for row in await rows(database_url, f"{answers_sql} FROM participants")
    }
    emails_sql = "SELECT user_id FROM outbox WHERE kind = 'confirmation'"
    queued = Counter(row[0] for row in await rows(database_url, emails_sql))
    for person in people:
        last_name = LAST_NAMES[person.user_id % len(LAST_NAMES)]
        answers = ("complete", person.first_name, last_name, person.phone, person.email, "69003")
        assert stored[person.user_id] == answers
        assert queued[person.user_id] == 1
    transcripts = [transcript(api, person) for person in people]
    reference = transcripts[0][0]
    for person, (seen, _) in zip(people, transcripts, strict=True):
        assert seen == reference, (person.user_id, seen, reference)  # same replies, same order
    assert len(reference) >= 14 and any("e-mail de confirmation" in t for t in reference[-2:])
    received = Counter(str(message["To"]) for message in inbox.messages)
    assert set(received.values()) == {1}  # none twice
    # An email leaving at a kill is given up, not sent again: it may have arrived (the server
    # took it, the bot died before noting so) or not; every other one arrived.
    status_sql = "SELECT user_id, status FROM outbox WHERE kind = 'confirmation'"
    statuses = dict(await rows(database_url, status_sql))
    for person in people:
        assert person.email in received or statuses[person.user_id] == "interrupted"
    given_up = await interrupted(database_url)
    assert given_up <= len(kills)  # at most the one in flight at each kill
    assert pusher.dropped == [] and "Traceback" not in bot.logs()
    retried_after_commit = bot.logs().count("not acted on again")
    print(
        f"\nwebhook crash: {PEOPLE} people, {len(pusher.delivered)} updates, SIGKILL after"
        f" {kills} updates, {pusher.retries} failed pushes retried ({dict(pusher.answers)}),"
        f" {retried_after_commit} updates redelivered after their commit,"
        f" {sum(n for _, n in transcripts)} replies repeated, {len(received)} emails delivered"
        f" once, {given_up} interrupted, {time.monotonic() - started:.1f} s"
    )


async def test_sigterm_stops_a_webhook_at_once(
    api: LocalBotApi, tmp_path: Path, database_url: str
) -> None:
    bot = WebhookBot(api, tmp_path, database_url=database_url)
    await bot.start()
    assert bot.process is not None
    began = time.monotonic()
    bot.process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(bot.process.wait(), 10) == 0
    assert time.monotonic() - began < 5 and "Traceback" not in bot.logs()
