"""One-click unsubscribe without Telegram (RFC 8058): every email's List-Unsubscribe names an
https link to the bot's own server; a POST there withdraws the email-news consent, or records
that an invited address must never be invited again, with no login.

The link names the email by its outbox key and carries a keyed hash of it, under the address-
hash key the store already keeps: unguessable, and forged by nobody who lacks the key. A GET
only shows a one-button page, so link scanners that fetch every URL unsubscribe nobody.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from html import escape

from aiohttp import web

from bot.settings import Settings, SettingsError
from conversations.catalogue import Catalogue
from conversations.model import ConsentKind, SuppressAddress, WithdrawConsent
from storage import Storage

PATH = "/unsubscribe/{token}"
_INVITATION = "invitation:"


class OneClickLinks:
    """The https link for one email, and the email a link names."""

    def __init__(self, public_url: str, sign: Callable[[str], str]) -> None:
        self._base = public_url.rstrip("/")
        self._sign = sign

    def _mac(self, key: str) -> str:
        # The store's keyed hash folds case: sign a digest of the key, which has none to fold.
        return self._sign(f"list-unsubscribe:{hashlib.sha256(key.encode()).hexdigest()}")

    def url(self, email_key: str) -> str:
        reference = base64.urlsafe_b64encode(email_key.encode()).decode().rstrip("=")
        return f"{self._base}{PATH.format(token=f'{reference}.{self._mac(email_key)}')}"

    def email_key(self, token: str) -> str | None:
        """The outbox key the token names, or None for a token this server did not make."""
        reference, _, mac = token.partition(".")
        try:
            key = base64.urlsafe_b64decode(reference + "=" * (-len(reference) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        return key if hmac.compare_digest(mac, self._mac(key)) else None


@dataclass(frozen=True)
class Subject:
    """Who an email's unsubscribe speaks for: an invited address, or a participant."""

    language: str
    address_hash: str | None = None
    user_id: int | None = None


class Unsubscriptions:
    """The two withdrawals, as the steps' own effects, written on the store's connection."""

    def __init__(self, storage: Storage, default_language: str) -> None:
        self._storage = storage
        self._default_language = default_language

    async def subject(self, email_key: str) -> Subject | None:
        rows = await self._storage.database.fetch(
            "SELECT user_id, language FROM outbox WHERE idempotency_key = ?", (email_key,)
        )
        language = rows[0][1] if rows else self._default_language
        if email_key.startswith(_INVITATION):
            return Subject(language, address_hash=email_key.removeprefix(_INVITATION))
        if not rows or rows[0][0] is None:
            return None  # the person erased everything: nothing is left to send them
        return Subject(language, user_id=int(rows[0][0]))

    async def withdraw(self, subject: Subject, now: datetime) -> None:
        if subject.address_hash is not None:
            effect: SuppressAddress | WithdrawConsent = SuppressAddress(subject.address_hash)
        else:
            effect = WithdrawConsent(ConsentKind.NEWS_EMAIL, now)
        user_id = subject.user_id or 0  # an address's suppression belongs to nobody
        participants = self._storage.participants
        await self._storage.database.run(participants.effect_statements(user_id, effect, now))


class UnsubscribePages:
    """GET shows the one-button page; POST (the mailbox's one click, or the button) acts."""

    def __init__(
        self,
        public_url: str,
        texts: Catalogue,
        store: Callable[[], Storage | None],
        clock: Callable[[], datetime],
    ) -> None:
        self._public_url = public_url
        self._texts = texts
        self._store = store
        self._clock = clock

    def register(self, app: web.Application) -> None:
        app.router.add_get(PATH, self.show)
        app.router.add_post(PATH, self.act)

    async def _subject(self, request: web.Request) -> tuple[Unsubscriptions, Subject | None]:
        store = self._store()
        if store is None:
            raise web.HTTPServiceUnavailable(text="starting")
        unsubscriptions = Unsubscriptions(store, self._texts.default_language)
        links = OneClickLinks(self._public_url, store.participants.address_hash)
        key = links.email_key(request.match_info["token"])
        subject = None if key is None else await unsubscriptions.subject(key)
        return unsubscriptions, subject

    async def show(self, request: web.Request) -> web.Response:
        _, subject = await self._subject(request)
        if subject is None:
            return self._invalid()
        question = "news" if subject.user_id is not None else "invitation"
        form = (
            f'<form method="post"><button type="submit">'
            f"{self._text(subject.language, 'unsubscribe.page.button')}</button></form>"
        )
        body = f"<p>{self._text(subject.language, f'unsubscribe.page.{question}')}</p>{form}"
        return self._page(subject.language, body)

    async def act(self, request: web.Request) -> web.Response:
        unsubscriptions, subject = await self._subject(request)
        if subject is None:
            return self._invalid()
        await unsubscriptions.withdraw(subject, self._clock())
        done = (
            "unsubscribe.page.news_done" if subject.user_id is not None else "unsubscribe.address"
        )
        return self._page(subject.language, f"<p>{self._text(subject.language, done)}</p>")

    def _invalid(self) -> web.Response:
        language = self._texts.default_language
        body = f"<p>{self._text(language, 'unsubscribe.page.invalid')}</p>"
        return self._page(language, body, status=404)

    def _text(self, language: str, key: str) -> str:
        # Only ever put between tags: the apostrophes of French stay as typed.
        return escape(self._texts.render(language, key), quote=False)

    def _page(self, language: str, body: str, status: int = 200) -> web.Response:
        title = self._text(language, "unsubscribe.page.title")
        page = (
            f'<!doctype html><html lang="{escape(language)}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{title}</title><style>body{{font-family:sans-serif;max-width:32em;"
            "margin:3em auto;padding:0 1em;line-height:1.5}button{font-size:1.1em;"
            f"padding:.5em 1em}}</style></head><body><h1>{title}</h1>{body}</body></html>"
        )
        # No referrer: the page's address is the token.
        headers = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
        return web.Response(text=page, content_type="text/html", status=status, headers=headers)


def public_url(settings: Settings) -> str | None:
    """PUBLIC_URL without its trailing slash; SettingsError unless it is https."""
    if settings.public_url is None:
        return None
    if not settings.public_url.startswith("https://"):
        raise SettingsError(
            f"PUBLIC_URL must start with https:// (mailboxes only follow https unsubscribe"
            f" links): {settings.public_url!r}"
        )
    return settings.public_url.rstrip("/")
