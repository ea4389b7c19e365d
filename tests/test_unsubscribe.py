"""One-click unsubscribe (RFC 8058): the link in each email's headers, the page, the POST."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.bootstrap import build_mailer, open_migrated_storage
from bot.mail.unsubscribe import OneClickLinks
from bot.settings import Settings
from bot.telegram.application import build_application
from bot.telegram.webhook import STORE, HttpServer, http_app
from bot.texts import load_catalogue
from conversations.model import Consent, ConsentKind, InviteFriends, Participant, RecordConsent
from storage import Storage
from tests.conftest import NOW
from tests.smtp_server import body, free_port, smtp_server
from tests.test_mail import Clock, confirmation

PUBLIC = "https://cafe.example.org"


@pytest.fixture
def public(settings: Settings) -> Settings:
    return settings.replace(public_url=PUBLIC + "/", webhook_listen=f"127.0.0.1:{free_port()}")


@pytest.fixture
async def store(public: Settings) -> AsyncIterator[Storage]:
    opened = await open_migrated_storage(public, Clock())
    yield opened
    await opened.close()


@pytest.fixture
async def server(public: Settings, store: Storage) -> AsyncIterator[str]:
    """The small server that runs beside polling: no webhook, only these pages and health."""
    application = build_application(public)
    application.bot_data[STORE] = store
    running = HttpServer(http_app(application, public, Clock(), webhook=False), public)
    await running.start()
    yield f"http://{public.webhook_listen}"
    await running.stop()


async def subscribed(store: Storage, user_id: int) -> Participant:
    consents = tuple(Consent(kind, "v1", NOW) for kind in ConsentKind)
    person = Participant(user_id, "fr", created_at=NOW, first_name="Zoé", consents=consents)
    email = confirmation(user_id, f"p{user_id}@free.fr")
    invite = InviteFriends(("ami@free.fr",), "Zoé", "REFzoe", "fr")
    await store.participants.save(
        person, 0, [*map(RecordConsent, consents), email, invite], None, NOW
    )
    return person


def one_click_path(message: object) -> str:
    header = str(message["List-Unsubscribe"]).strip()  # type: ignore[index]
    match = re.fullmatch(r"<https://cafe\.example\.org(/unsubscribe/[A-Za-z0-9_.=-]+)>", header)
    assert match, header
    return match[1]


async def test_every_email_carries_a_one_click_link_and_the_bot_link_stays_in_the_body(
    public: Settings, store: Storage, server: str
) -> None:
    await subscribed(store, 1)
    texts = load_catalogue(public)
    with smtp_server() as (inbox, port):
        mailer = build_mailer(
            public.replace(smtp_url=f"smtp://127.0.0.1:{port}"), store, texts, "coffee_bot", Clock()
        )
        assert await mailer.send_due() == 2
    for message in inbox.messages:
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert "https://t.me/coffee_bot?start=u" in body(message, "plain")
    # The mailbox's click, on the confirmation's link as sent.
    form = {"List-Unsubscribe": "One-Click"}
    path = one_click_path(inbox.to("p1@free.fr")[0])
    async with aiohttp.ClientSession() as http, http.post(server + path, data=form) as done:
        assert done.status == 200
    assert await news_consents(store, 1) == {ConsentKind.NEWS_SMS}


async def test_without_public_url_only_the_deep_link(settings: Settings) -> None:
    opened = await open_migrated_storage(settings, Clock())
    try:
        await subscribed(opened, 1)
        with smtp_server() as (inbox, port):
            mailer = build_mailer(
                settings.replace(smtp_url=f"smtp://127.0.0.1:{port}"),
                opened,
                load_catalogue(settings),
                "coffee_bot",
                Clock(),
            )
            await mailer.send_due()
    finally:
        await opened.close()
    confirmation_email = inbox.to("p1@free.fr")[0]
    assert confirmation_email["List-Unsubscribe"] == "<https://t.me/coffee_bot?start=unsubscribe>"
    assert confirmation_email["List-Unsubscribe-Post"] is None


async def news_consents(store: Storage, user_id: int) -> set[ConsentKind]:
    person = await store.participants.load(user_id)
    assert person is not None
    return {
        c.kind for c in person.consents if c.kind in (ConsentKind.NEWS_EMAIL, ConsentKind.NEWS_SMS)
    }


async def test_a_get_shows_one_button_and_changes_nothing_then_the_post_withdraws(
    store: Storage, server: str
) -> None:
    await subscribed(store, 1)
    path = OneClickLinks(PUBLIC, store.participants.address_hash).url(
        "confirmation:1:" + "Tok3n-for_the-tests-22"
    )
    path = path.removeprefix(PUBLIC)
    async with aiohttp.ClientSession() as http:
        async with http.get(server + path) as page:
            html = await page.text()
            assert page.status == 200 and page.headers["Referrer-Policy"] == "no-referrer"
        assert '<form method="post">' in html and "par e-mail\u202f?" in html
        assert "<script" not in html and "http" not in html.split("<body>")[1]
        assert await news_consents(store, 1) == {ConsentKind.NEWS_EMAIL, ConsentKind.NEWS_SMS}
        # What Gmail sends: a form body, no cookie, no login.
        form = {"List-Unsubscribe": "One-Click"}
        async with http.post(server + path, data=form) as done:
            assert done.status == 200 and "C’est fait" in await done.text()
        async with http.post(server + path, data=form) as again:
            assert again.status == 200  # the same click twice changes nothing more
    assert await news_consents(store, 1) == {ConsentKind.NEWS_SMS}


async def test_an_invited_address_is_never_invited_again(store: Storage, server: str) -> None:
    await subscribed(store, 1)
    hashed = store.participants.address_hash("ami@free.fr")
    path = OneClickLinks(PUBLIC, store.participants.address_hash).url(f"invitation:{hashed}")
    async with (
        aiohttp.ClientSession() as http,
        http.post(server + path.removeprefix(PUBLIC)) as done,
    ):
        assert done.status == 200 and "ne recevra plus" in await done.text()
    rows = await store.database.fetch("SELECT reason FROM address_hashes WHERE hash = ?", (hashed,))
    assert {row[0] for row in rows} == {"invited", "unsubscribed"}
    assert await store.outbox.counts() == {"pending": 1, "cancelled": 1}
    assert await news_consents(store, 1) == {ConsentKind.NEWS_EMAIL, ConsentKind.NEWS_SMS}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-1] + ("0" if token[-1] != "0" else "1"),  # another signature
        lambda token: "Y29uZmlybWF0aW9uOjI6eA" + token[token.index(".") :],  # another email
        lambda token: "%%%." + token.split(".")[1],
        lambda token: "",
    ],
)
async def test_a_forged_or_damaged_link_withdraws_nothing(
    store: Storage, server: str, tamper: object
) -> None:
    await subscribed(store, 1)
    token = OneClickLinks(PUBLIC, store.participants.address_hash).url(
        "confirmation:1:Tok3n-for_the-tests-22"
    )
    forged = tamper(token.rsplit("/", 1)[1])  # type: ignore[operator]
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server}/unsubscribe/{forged}") as answer,
    ):
        assert answer.status == 404
        assert "n’est pas valide" in await answer.text() or forged == ""
    assert await news_consents(store, 1) == {ConsentKind.NEWS_EMAIL, ConsentKind.NEWS_SMS}


async def test_the_page_escapes_what_staff_wrote(public: Settings, store: Storage) -> None:
    hostile = public.replace(candidate_name="<script>alert(1)</script>")
    application = build_application(hostile)
    application.bot_data[STORE] = store
    running = HttpServer(http_app(application, hostile, Clock(), webhook=False), hostile)
    await subscribed(store, 1)
    path = OneClickLinks(PUBLIC, store.participants.address_hash).url(
        "confirmation:1:Tok3n-for_the-tests-22"
    )
    await running.start()
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://{hostile.webhook_listen}{path.removeprefix(PUBLIC)}") as page,
        ):
            html = await page.text()
    finally:
        await running.stop()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_beside_polling_there_is_no_webhook_and_health_answers(server: str) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server}/telegram", json={"update_id": 1}) as webhook:
            assert webhook.status in (404, 405)
        async with http.get(f"{server}/healthz") as health:
            assert health.status == 200
