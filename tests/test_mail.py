"""The outbox and its sender, against a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest

from bot.bootstrap import build_mailer, open_migrated_storage
from bot.mail.sender import OutboxSender
from bot.settings import Settings
from conversations.catalogue import Catalogue
from conversations.model import InviteFriends, Participant, QueueEmail, SuppressAddress
from storage import Storage
from tests.conftest import NOW
from tests.smtp_server import body, free_port, smtp_server


@dataclass
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Storage]:
    opened = await open_migrated_storage(settings, Clock())
    yield opened
    await opened.close()


def confirmation(
    user_id: int, address: str = "zoe@orange.fr", token: str = "Tok3n-for_the-tests-22"
) -> QueueEmail:
    params = (("first_name", "Zoé <b>"), ("token", token), ("code", "123456"))
    return QueueEmail("confirmation", address, "fr", params, key=f"confirmation:{user_id}:{token}")


async def queue(store: Storage, user_id: int, *effects: object) -> None:
    person = Participant(user_id, "fr", created_at=NOW, first_name="Zoé")
    await store.participants.save(person, 0, list(effects), None, NOW)  # type: ignore[arg-type]


def mailer_for(
    settings: Settings, store: Storage, texts: Catalogue, clock: Clock, port: int
) -> OutboxSender:
    settings = settings.replace(
        smtp_url=f"smtp://127.0.0.1:{port}", outbox_retry_base_seconds=10, outbox_max_attempts=3
    )
    return build_mailer(settings, store, texts, "coffee_test_bot", clock)


async def test_a_confirmation_arrives_once_with_both_parts_and_headers(
    settings: Settings, store: Storage, texts: Catalogue
) -> None:
    await queue(store, 1, confirmation(1))
    with smtp_server() as (inbox, port):
        mailer = mailer_for(settings, store, texts, Clock(), port)
        assert await mailer.send_due() == 1
        assert await mailer.send_due() == 0
    [message] = inbox.messages
    assert message["To"] == "zoe@orange.fr"
    assert message["Subject"] == "Confirmez votre participation\u00a0: un café avec Camille Dupont"
    assert message["List-Unsubscribe"] == "<https://t.me/coffee_test_bot?start=unsubscribe>"
    assert re.fullmatch(r"<[0-9a-f]{32}@campagne\.example>", message["Message-ID"])
    text, html = body(message, "plain"), body(message, "html")
    link = "https://t.me/coffee_test_bot?start=c_Tok3n-for_the-tests-22"
    assert link in text and f'href="{link}"' in html
    assert "123456" in text and "123456" in html
    assert "Zoé <b>" in text and "Zoé &lt;b&gt;" in html  # the HTML part escapes what people typed
    assert await store.outbox.counts() == {"sent": 1}


async def test_an_address_with_accents_travels_as_utf8(
    settings: Settings, store: Storage, texts: Catalogue
) -> None:
    await queue(store, 1, confirmation(1, "élodie@exemple.fr"))
    with smtp_server() as (inbox, port):
        assert await mailer_for(settings, store, texts, Clock(), port).send_due() == 1
    [message] = inbox.messages
    assert message["To"] == "élodie@exemple.fr"
    assert message["Subject"] == "Confirmez votre participation\u00a0: un café avec Camille Dupont"


async def test_a_transient_refusal_is_retried_after_a_backoff(
    settings: Settings, store: Storage, texts: Catalogue
) -> None:
    clock = Clock()
    await queue(store, 1, confirmation(1))
    with smtp_server() as (inbox, port):
        inbox.refusals.append("451 4.3.0 Try again later")
        mailer = mailer_for(settings, store, texts, clock, port)
        await mailer.send_due()
        assert inbox.messages == [] and await store.outbox.counts() == {"pending": 1}
        clock.advance(9)
        await mailer.send_due()
        assert inbox.messages == []  # not due before the backoff
        clock.advance(1)
        await mailer.send_due()
    assert len(inbox.messages) == 1
    assert await store.outbox.counts() == {"sent": 1}


async def test_a_server_down_for_a_while_then_back_gets_every_email_once(
    settings: Settings, store: Storage, texts: Catalogue
) -> None:
    clock, port = Clock(), free_port()
    for user_id in range(1, 6):
        await queue(
            store,
            user_id,
            confirmation(user_id, f"p{user_id}@free.fr", f"token-number-{user_id:010d}"),
        )
    mailer = mailer_for(settings, store, texts, clock, port)
    assert await mailer.send_due() == 0  # nobody listens on the port
    assert await store.outbox.counts() == {"pending": 5}
    with smtp_server(port) as (inbox, _):
        clock.advance(10)
        assert await mailer.send_due() == 5
        clock.advance(3600)
        assert await mailer.send_due() == 0
    assert sorted(str(m["To"]) for m in inbox.messages) == [f"p{n}@free.fr" for n in range(1, 6)]


async def test_permanent_refusals_and_too_many_attempts_give_up(
    settings: Settings, store: Storage, texts: Catalogue
) -> None:
    clock = Clock()
    await queue(store, 1, confirmation(1, "gone@free.fr"))
    with smtp_server() as (inbox, port):
        inbox.refusals += ["550 5.1.1 No such user"]
        mailer = mailer_for(settings, store, texts, clock, port)
        await mailer.send_due()
        assert await store.outbox.counts() == {"failed": 1}
        await queue(store, 2, confirmation(2, "busy@free.fr", "another-token-000002"))
        inbox.refusals += ["452 Mailbox full"] * 3
        for _ in range(4):
            await mailer.send_due()
            clock.advance(3600)
    assert inbox.messages == []
    assert await store.outbox.counts() == {"failed": 2}
    dump = await everything(store)
    assert "gone@free.fr" not in dump and "busy@free.fr" not in dump


async def test_an_email_being_sent_when_the_bot_died_is_not_sent_again(
    settings: Settings, texts: Catalogue
) -> None:
    store = await open_migrated_storage(settings, Clock())
    await queue(store, 1, confirmation(1))
    [email] = await store.outbox.due(NOW, 10)
    assert await store.outbox.start_sending(
        email.key, NOW, None
    )  # the process dies here, during SMTP
    await store.close()
    store = await open_migrated_storage(settings, Clock())
    try:
        with smtp_server() as (inbox, port):
            assert await mailer_for(settings, store, texts, Clock(), port).send_due() == 0
        assert inbox.messages == [] and await store.outbox.counts() == {"interrupted": 1}
    finally:
        await store.close()


async def test_without_smtp_emails_are_written_as_eml_files(
    settings: Settings, store: Storage, texts: Catalogue, tmp_path: Path
) -> None:
    await queue(store, 1, confirmation(1))
    folder = tmp_path / "outbox"
    mailer = build_mailer(
        settings.replace(mail_outbox_dir=str(folder)), store, texts, "coffee_test_bot", Clock()
    )
    assert await mailer.send_due() == 1
    [written] = folder.glob("*.eml")
    message = message_from_bytes(written.read_bytes(), policy=default)
    assert message["To"] == "zoe@orange.fr" and "c_Tok3n-for_the-tests-22" in body(message, "plain")  # type: ignore[arg-type]


async def test_each_friend_is_invited_once_by_anyone_and_then_forgotten(
    settings: Settings, store: Storage, texts: Catalogue
) -> None:
    await queue(store, 1, InviteFriends(("ami@free.fr", "Autre@Free.fr"), "Zoé", "REFzoe", "fr"))
    await queue(store, 2, InviteFriends(("AMI@free.fr", "refus@free.fr"), "Léa", "REFlea", "en"))
    hashed = store.participants.address_hash("refus@free.fr")
    await queue(store, 3, SuppressAddress(hashed))
    with smtp_server() as (inbox, port):
        assert await mailer_for(settings, store, texts, Clock(), port).send_due() == 2
    assert sorted(str(m["To"]) for m in inbox.messages) == ["Autre@Free.fr", "ami@free.fr"]
    invitation = inbox.to("ami@free.fr")[0]
    assert invitation["Subject"] == "Une invitation à prendre un café avec Camille Dupont"
    text = body(invitation, "plain")
    assert "https://t.me/coffee_test_bot?start=r_REFzoe" in text
    assert f"start=u_{store.participants.address_hash('ami@free.fr')}" in text
    dump = await everything(store)
    for address in ("ami@free.fr", "autre@free.fr", "refus@free.fr"):
        assert address not in dump.lower()
    assert await store.outbox.counts() == {
        "sent": 2,
        "cancelled": 1,
    } or await store.outbox.counts() == {"sent": 2}


async def test_text_parts_are_quoted_printable_so_the_raw_message_shows_the_code(
    settings: Settings, store: Storage, texts: Catalogue
) -> None:
    await queue(store, 1, confirmation(1))
    with smtp_server() as (inbox, port):
        assert await mailer_for(settings, store, texts, Clock(), port).send_due() == 1
    [message] = inbox.messages
    parts = [part for part in message.walk() if part.get_content_maintype() == "text"]
    assert [part["Content-Transfer-Encoding"] for part in parts] == ["quoted-printable"] * 2
    assert "123456" in message.as_string()  # the raw message, not only its decoded body


async def test_eml_files_are_plain_utf8_that_cat_shows_as_written(
    settings: Settings, store: Storage, texts: Catalogue, tmp_path: Path
) -> None:
    await queue(store, 1, confirmation(1))
    mailer = build_mailer(settings, store, texts, "coffee_test_bot", Clock())
    assert await mailer.send_due() == 1
    [written] = (tmp_path / "outbox").glob("*.eml")
    raw = written.read_text(encoding="utf-8")
    assert raw.count("Content-Transfer-Encoding: 8bit") == 2 and "base64" not in raw
    assert "Bonjour Zoé <b>," in raw
    assert "https://t.me/coffee_test_bot?start=c_Tok3n-for_the-tests-22" in raw
    assert "123456" in raw
    message = message_from_bytes(written.read_bytes(), policy=default)
    assert "Bonjour Zoé <b>," in body(message, "plain")  # type: ignore[arg-type]
    assert "zoe@orange.fr" not in written.name  # the recipient is in no file name or log line


async def everything(store: Storage) -> str:
    """Every row of every table, as text: to look for what must not be kept."""
    tables = await store.database.tables()
    rows = [row for table in tables for row in await store.database.fetch(f"SELECT * FROM {table}")]
    return "\n".join(str(tuple(row)) for row in rows)
