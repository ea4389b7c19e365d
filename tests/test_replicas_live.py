"""Two `coffeebot webhook` processes on one PostgreSQL database, pushed to the way Telegram does
(tests/webhook_pusher.py), one of them killed with SIGKILL three times and restarted while 300
people sign up; then the draw, confirmed on both replicas at once, with the leader killed.

The pusher sends each request to the replicas in turn: it stands in for the load balancer
(Caddy in deploy/) in front of them. Both replicas run the same settings, as in deploy/compose.yaml.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.bootstrap import utc_now
from bot.telegram.webhook import SECRET_HEADER
from tests.bot_api_server import LocalBotApi
from tests.conftest import ON_POSTGRES
from tests.fake_beacon import running_drand
from tests.live import Person, rows, started
from tests.smtp_server import body, smtp_server
from tests.test_console import coffeebot
from tests.test_webhook import SECRET
from tests.test_webhook_live import LAST_NAMES, WebhookBot, sign_up
from tests.webhook_pusher import WebhookPusher

# Once per CI run, in its PostgreSQL pass: replicas need PostgreSQL, and this test is long.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not ON_POSTGRES, reason="runs with COFFEEBOT_TEST_DATABASE=postgresql (.ci/run does)"
    ),
]

PEOPLE = int(os.environ.get("REPLICAS_TEST_PEOPLE", "300"))
ADMIN = 42
LEADING = "leading: the periodic jobs run here"
# How long a person waits for each answer: long, as the machine may be shared.
PATIENCE = 120
# Seconds between two tries for the lead, and between two runs of the draw's tick.
CHECK = 0.5


@dataclass
class Replica(WebhookBot):
    name: str = ""
    # From the SIGKILL on: a dead process's returncode shows only once the loop has reaped
    # it, and meanwhile its log still says it leads while the other replica took over.
    killed: bool = False

    async def start(self) -> None:
        self.killed = False
        await super().start()

    async def kill(self) -> None:
        self.killed = True
        await super().kill()

    def current_log(self) -> str:
        path = self.workdir / f"bot-{self.starts}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None and not self.killed

    def leading(self) -> bool:
        """What its own log says: it took the lead, and has not lost it since."""
        log = self.current_log()
        return self.alive and log.rfind(LEADING) > log.rfind("lost the lead")


@pytest.fixture
async def api() -> AsyncIterator[LocalBotApi]:
    async with started(LocalBotApi()) as server:
        yield server


async def until(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not in time: {what}"
        await asyncio.sleep(0.02)


def signup_transcript(api: LocalBotApi, person: Person) -> tuple[list[str], int]:
    """The signup as the person saw it, up to the email's announcement: their own answers
    masked, each message once; and how many were repeated (a reply in flight at a kill is sent
    again, as it may have left)."""
    own = (person.first_name, LAST_NAMES[person.user_id % len(LAST_NAMES)], person.email)
    seen: list[str] = []
    for sent in api.sent[person.user_id]:
        text = sent.params.get("text", "")
        for value in own:
            text = text.replace(value, "…")
        seen.append(re.sub(r"\d", "#", f"{text} {sent.params.get('reply_markup')}"))
        if "e-mail de confirmation part" in text:
            break
    kept = list(dict.fromkeys(seen))
    return kept, len(seen) - len(kept)


async def confirm_address(person: Person, link: str, pusher: WebhookPusher) -> None:
    seen = len(person.api.texts_to(person.user_id))
    pusher.push(person.text(f"/start c_{link}"))
    await person.api.wait_for_chat(
        person.user_id,
        lambda: any("Adresse confirmée" in t for t in person.api.texts_to(person.user_id)[seen:]),
        PATIENCE,
    )


async def emails_final(database_url: str, people: int) -> dict[int, str]:
    """Each person's confirmation email once it is sent or given up. A replica that starts gives
    up what was leaving when a process stopped, perhaps another replica's email in flight,
    which that replica then sends and marks sent: only a state that no longer changes counts."""
    query = "SELECT user_id, status FROM outbox WHERE kind = 'confirmation'"
    deadline = time.monotonic() + PATIENCE
    while True:
        statuses = dict(await rows(database_url, query))
        if len(statuses) == people and set(statuses.values()) <= {"sent", "interrupted"}:
            await asyncio.sleep(1)
            if dict(await rows(database_url, query)) == statuses:
                return statuses
        assert time.monotonic() < deadline, "emails neither sent nor given up"
        await asyncio.sleep(0.2)


def leader(replicas: list[Replica]) -> Replica | None:
    leading = [replica for replica in replicas if replica.leading()]
    return leading[0] if leading else None


async def kill_and_restart(victim: Replica, replicas: list[Replica]) -> float | None:
    """SIGKILL, then restart; when the victim led, how long until the other replica leads."""
    was_leading = victim.leading()
    other = next(replica for replica in replicas if replica is not victim)
    killed_at = time.monotonic()
    await victim.kill()
    takeover = None
    if was_leading:
        await until(other.leading, 60, "another replica takes the periodic jobs over")
        takeover = time.monotonic() - killed_at
    await victim.start()
    return takeover


async def press_on(http: aiohttp.ClientSession, replica: Replica, update: dict[str, Any]) -> int:
    async with http.post(
        f"{replica.url}/telegram", json=update, headers={SECRET_HEADER: SECRET}
    ) as answer:
        return answer.status


async def test_two_replicas_one_killed_three_times_lose_nothing_and_draw_once(
    api: LocalBotApi, tmp_path: Path, postgres_url: str
) -> None:
    chance = random.Random(2029)
    started = time.monotonic()
    phases: dict[str, float] = {}
    async with running_drand(utc_now) as drand:
        with smtp_server() as (inbox, port):
            settings = {
                "SMTP_URL": f"smtp://127.0.0.1:{port}",
                "TELEGRAM_MAX_MESSAGES_PER_SECOND": "20000",
                "WEBHOOK_REPLICAS": "2",
                "FLOOD_MAX_MESSAGES": "1000",
                "LEADER_CHECK_SECONDS": str(CHECK),
                "DRAW_CHECK_SECONDS": str(CHECK),
                "ADMIN_IDS": str(ADMIN),
                "BEACON_URL": drand.url,
                # The beacon comes out after the confirmations: the draw is the periodic tick's.
                "BEACON_DELAY_SECONDS": "3",
                "ADDRESS_HASH_KEY": "the same key on every replica, 0123456789",
            }
            replicas = []
            for name in ("a", "b"):
                (tmp_path / name).mkdir()
                replicas.append(
                    Replica(api, tmp_path / name, settings, database_url=postgres_url, name=name)
                )
            # Registered once, from one place; the address stands for the balancer's.
            registered = await asyncio.to_thread(
                coffeebot, tmp_path, "webhook", "set",
                env={"TELEGRAM_BOT_TOKEN": "123456:LIVE", "TELEGRAM_API_BASE_URL": api.base_url,
                     "WEBHOOK_SECRET": SECRET, "WEBHOOK_URL": f"{replicas[0].url}/telegram"},
            )  # fmt: skip
            assert registered.returncode == 0, registered.stderr
            for replica in replicas:
                await replica.start()
            phases["started"] = time.monotonic() - started
            await until(lambda: leader(replicas) is not None, 30, "a replica leads")
            # Each request goes to the next replica: the pusher stands in for the balancer.
            pusher = WebhookPusher(
                [f"{replica.url}/telegram" for replica in replicas],
                api.webhook["secret_token"],
                api.webhook["max_connections"],
                failover=True,
            )
            await pusher.start()
            two_leaders = 0

            async def watch() -> None:
                nonlocal two_leaders
                while True:
                    two_leaders += sum(replica.leading() for replica in replicas) > 1
                    await asyncio.sleep(0.1)

            watching = asyncio.create_task(watch())
            people = [Person(api, 10_000 + n, first_name="Zoé") for n in range(PEOPLE)]
            signing = asyncio.gather(*(sign_up(person, pusher, api, PATIENCE) for person in people))
            kills: list[tuple[str, int]] = []
            takeovers: list[float] = []
            thresholds = sorted(chance.sample(range(3, PEOPLE * 12), 3))
            for number, threshold in enumerate(thresholds):
                await api.wait_for(
                    lambda t=threshold: sum(p.updates_sent for p in people) >= t, PATIENCE * 5
                )
                await asyncio.sleep(chance.uniform(0, 0.2))
                # The first kill is the leader's; the others, either replica's.
                victim = leader(replicas) if number == 0 else chance.choice(replicas)
                assert victim is not None
                kills.append((victim.name, sum(p.updates_sent for p in people)))
                takeover = await kill_and_restart(victim, replicas)
                if takeover is not None:
                    takeovers.append(takeover)
            try:
                await signing
            except AssertionError as error:
                state = f"dropped {pusher.dropped}, answers {dict(pusher.answers)}, kills {kills}"
                raise AssertionError(f"{error}; {state}") from error
            phases["signups"] = time.monotonic() - started
            await api.wait_for(lambda: pusher.pending() == 0, PATIENCE)
            statuses = await emails_final(postgres_url, PEOPLE)
            confirmations = list(inbox.messages)
            phases["emails"] = time.monotonic() - started

            # Everyone whose email arrived follows its link: their entry and ticket are made.
            links = {}
            for message in confirmations:
                link = re.search(r"start=c_([A-Za-z0-9_-]+)", body(message, "plain"))
                assert link is not None
                links[str(message["To"])] = link[1]
            entrants = [person for person in people if person.email in links]
            await asyncio.gather(
                *(confirm_address(person, links[person.email], pusher) for person in entrants)
            )

            phases["confirmed"] = time.monotonic() - started
            admin = Person(api, ADMIN)
            draw_command = admin.text("/draw")
            pusher.push(draw_command)
            await until(
                lambda: admin.buttons().get("✅ Confirmer le tirage") == "admin.draw.confirm",
                30,
                "the draw's preview",
            )
            drawing_leader = leader(replicas)
            assert drawing_leader is not None
            # Two taps on Confirm that reach both replicas at the same moment.
            taps = [admin.press("admin.draw.confirm") for _ in replicas]
            async with aiohttp.ClientSession() as http:
                answers = await asyncio.gather(
                    *(
                        press_on(http, replica, tap)
                        for replica, tap in zip(replicas, taps, strict=True)
                    )
                )
            assert answers == [200, 200]
            assert any("attend le hasard public" in text for text in api.texts_to(ADMIN)[-2:])
            # The beacon is not out yet: the leader, whose tick would draw, dies now.
            killed_at = time.monotonic()
            kills.append((drawing_leader.name, sum(p.updates_sent for p in people)))
            takeover = await kill_and_restart(drawing_leader, replicas)
            assert takeover is not None
            takeovers.append(takeover)

            def certificates() -> int:
                return sum(sent.method == "sendDocument" for sent in api.sent[ADMIN])

            await until(lambda: certificates() > 0, 30, "the draw, by the new leader's tick")
            drawn_after = time.monotonic() - killed_at
            phases["drawn"] = time.monotonic() - started
            await asyncio.sleep(4 * CHECK)  # time enough for a second draw, if one could happen
            watching.cancel()
            await pusher.stop()
            for replica in replicas:
                await replica.stop()

    answers_sql = "SELECT user_id, step, first_name, last_name, phone, email, postcode"
    stored = {
        row[0]: row[1:] for row in await rows(postgres_url, f"{answers_sql} FROM participants")
    }
    emails_sql = "SELECT user_id FROM outbox WHERE kind = 'confirmation'"
    queued = Counter(row[0] for row in await rows(postgres_url, emails_sql))
    for person in people:
        last_name = LAST_NAMES[person.user_id % len(LAST_NAMES)]
        answers = (person.first_name, last_name, person.phone, person.email, "69003")
        assert stored[person.user_id][1:] == answers  # every answer as sent
        assert queued[person.user_id] == 1  # one confirmation queued, whatever the retries
    assert {stored[person.user_id][0] for person in entrants} <= {"complete", "engage_actions"}
    # Each person's replies in the order of their inputs: the same transcript for everyone.
    transcripts = [signup_transcript(api, person) for person in people]
    reference = transcripts[0][0]
    for person, (seen, _) in zip(people, transcripts, strict=True):
        assert seen == reference, (person.user_id, seen, reference)
    assert len(reference) >= 14 and "e-mail de confirmation part" in reference[-1]
    # Each update acted on: its id recorded once (the key is unique), whichever replica.
    processed = {
        row[0] for row in await rows(postgres_url, "SELECT update_id FROM processed_updates")
    }
    # (Admin commands are not steps of a conversation: no record.)
    signups = set(pusher.delivered) - {draw_command["update_id"]}
    assert signups <= processed and pusher.dropped == []
    # Each confirmation email delivered once; one in flight at a kill is given up, not resent.
    received = Counter(str(message["To"]) for message in confirmations)
    assert set(received.values()) == {1}
    for person in people:
        status = statuses[person.user_id]
        assert (status == "sent") <= (person.email in received)  # sent means delivered
        assert person.email in received or status == "interrupted"
    given_up = PEOPLE - len(received)
    assert given_up <= len(kills)  # at most the one in flight at each kill
    # One draw, though both replicas were told to confirm it and its leader died.
    assert await rows(postgres_url, "SELECT status FROM draws") == [("done",)]
    done = await rows(postgres_url, "SELECT COUNT(*) FROM audit_log WHERE action = 'draw.done'")
    assert done == [(1,)] and certificates() == 1
    places = await rows(postgres_url, "SELECT COUNT(*) FROM draw_places")
    assert places == [(min(10, len(entrants)),)]
    told = await rows(
        postgres_url,
        "SELECT user_id, COUNT(*) FROM telegram_outbox WHERE kind = 'draw_result' GROUP BY user_id",
    )
    assert all(count == 1 for _, count in told)
    # The periodic jobs: never two leaders, and taken over after each of the leader's deaths.
    assert two_leaders == 0 and len(takeovers) >= 2 and max(takeovers) < 60
    logs = "\n".join(replica.logs() for replica in replicas)
    assert "Traceback" not in logs
    repeated = sum(n for _, n in transcripts)
    print(
        f"\nreplicas: {PEOPLE} people on 2 replicas (PostgreSQL), {len(pusher.delivered)} updates"
        f" delivered, {pusher.retries} failed pushes retried ({dict(pusher.answers)}),"
        f" {pusher.failovers} requests sent on to the other replica by the balancer,"
        f" SIGKILL of {kills} (replica, updates sent),"
        f" {logs.count('not acted on again')} updates redelivered after their commit,"
        f" {repeated} replies repeated, {len(received)} emails delivered once,"
        f" {given_up} given up at a kill, {len(entrants)} entrants,"
        f" takeover of the periodic jobs in {', '.join(f'{t:.2f}' for t in takeovers)} s,"
        f" the draw made {drawn_after:.1f} s after its leader's kill,"
        f" {time.monotonic() - started:.1f} s in all (at the end of each phase: {phases})"
    )
