"""Webhook mode: Telegram posts each update to the bot's HTTP server, which answers 200 only
once the update's step is committed and its replies have left.

python-telegram-bot's own webhook answers 200 on receipt and processes afterwards, so an
update is lost when the process dies in between. Here the request waits for the update to go
through the same processing as polling (the per-user processor, then the handlers); a failure
answers 500 and Telegram sends the update again, which the processed-update record makes act
once, sending only the replies that had not left (bot/kept_replies.py).

The same server answers GET /healthz and, when PUBLIC_URL is set, the one-click unsubscribe
links (bot/unsubscribe.py); beside polling it serves only those.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Callable
from datetime import datetime

from aiohttp import web
from telegram import Update
from telegram.ext import Application, CallbackContext

from bot.mail.unsubscribe import UnsubscribePages, public_url
from bot.settings import Settings, SettingsError
from bot.texts import load_catalogue
from storage import Storage

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
HEALTH_PATH = "/healthz"
# Telegram's alphabet for secret tokens; 32 characters at least, as the settings say.
_SECRET = re.compile(r"[A-Za-z0-9_-]{32,256}")
# A weak check that the secret was drawn at random rather than typed: token_urlsafe(32) has
# about 30 distinct characters.
_SECRET_DISTINCT_CHARACTERS = 12
SECRET_HINT = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
# The application's bot_data entry where the composition root puts the open store.
STORE = "store"
StoreGetter = Callable[[], "Storage | None"]
STORE_KEY: web.AppKey[StoreGetter] = web.AppKey("store")


def checked_secret(settings: Settings) -> str:
    """The webhook secret, or SettingsError saying what is wrong with it (never the value)."""
    secret = settings.webhook_secret
    if not secret:
        raise SettingsError(f"WEBHOOK_SECRET is not set: webhook mode needs one ({SECRET_HINT})")
    if not _SECRET.fullmatch(secret) or len(set(secret)) < _SECRET_DISTINCT_CHARACTERS:
        raise SettingsError(
            f"WEBHOOK_SECRET must be 32 to 256 random characters of A-Z a-z 0-9 _ - ({SECRET_HINT})"
        )
    return secret


def listen_address(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.webhook_listen.rpartition(":")
    if host and port.isdigit() and int(port) <= 65535:
        return host.strip("[]"), int(port)
    raise SettingsError(
        f"WEBHOOK_LISTEN has an invalid value: {settings.webhook_listen!r}"
        " (write host:port, e.g. 127.0.0.1:8080)"
    )


def webhook_path(settings: Settings) -> str:
    if not settings.webhook_path.startswith("/"):
        raise SettingsError(f"WEBHOOK_PATH must start with /: {settings.webhook_path!r}")
    return settings.webhook_path


class WebhookEndpoint:
    """Receives one update per request and answers once it is processed, or 500 if it failed."""

    def __init__(
        self,
        application: Application,  # type: ignore[type-arg]
        secret: str,
        max_body_bytes: int,
    ) -> None:
        self._application = application
        self._secret = secret.encode()
        self._max_body_bytes = max_body_bytes
        # Updates being processed (by identity), and whether a handler failed on them.
        self._failed: dict[int, bool] = {}
        application.add_error_handler(self._note_failure)

    async def _note_failure(self, update: object, context: CallbackContext) -> None:  # type: ignore[type-arg]
        if id(update) in self._failed:
            self._failed[id(update)] = True

    async def receive(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            return web.Response(status=403, text="forbidden")
        if (request.content_length or 0) > self._max_body_bytes:
            return web.Response(status=413, text="too large")
        try:
            update = Update.de_json(json.loads(await request.read()), self._application.bot)
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413, text="too large")
        except (ValueError, TypeError, KeyError, AttributeError):
            # Not JSON, or not an update: nothing a retry would mend, and nothing to log.
            return web.Response(status=400, text="not an update")
        if not isinstance(update.update_id, int):
            return web.Response(status=400, text="not an update")
        if await self._process(update):
            return web.Response(status=500, text="not processed: send it again")
        return web.Response(text="ok")

    async def _process(self, update: Update) -> bool:
        """Run the update through the processor and handlers; True when a handler failed."""
        application = self._application
        self._failed[id(update)] = False
        try:
            await application.update_processor.process_update(
                update, application.process_update(update)
            )
        finally:
            failed = self._failed.pop(id(update))
        return failed


async def health(request: web.Request) -> web.Response:
    """200 when the database answers, for the load balancer; 503 otherwise."""
    store: Storage | None = request.app[STORE_KEY]()
    try:
        if store is not None:
            await store.database.fetch("SELECT 1")
            return web.Response(text="ok")
    except Exception as error:
        log.warning("health check: the database does not answer: %s", type(error).__name__)
    return web.Response(status=503, text="database unavailable")


def http_app(
    application: Application,  # type: ignore[type-arg]
    settings: Settings,
    clock: Callable[[], datetime],
    *,
    webhook: bool,
) -> web.Application:
    """The routes: the webhook when asked, /healthz, and the unsubscribe pages if PUBLIC_URL."""
    app = web.Application(client_max_size=settings.webhook_max_body_bytes)

    def store() -> Storage | None:
        found: Storage | None = application.bot_data.get(STORE)
        return found

    app[STORE_KEY] = store
    app.router.add_get(HEALTH_PATH, health)
    if webhook:
        endpoint = WebhookEndpoint(
            application, checked_secret(settings), settings.webhook_max_body_bytes
        )
        app.router.add_post(webhook_path(settings), endpoint.receive)
    base = public_url(settings)
    if base is not None:
        UnsubscribePages(base, load_catalogue(settings), store, clock).register(app)
    return app


class HttpServer:
    """The aiohttp server on WEBHOOK_LISTEN; stopping it stops accepting, then lets the
    requests in flight finish for WEBHOOK_SHUTDOWN_SECONDS."""

    def __init__(self, app: web.Application, settings: Settings) -> None:
        self._address = listen_address(settings)
        self._runner = web.AppRunner(
            app,
            access_log=None,  # an access log would hold the unsubscribe tokens
            handle_signals=False,
            shutdown_timeout=settings.webhook_shutdown_seconds,
        )

    async def start(self) -> None:
        await self._runner.setup()
        host, port = self._address
        await web.TCPSite(self._runner, host, port).start()
        log.info("HTTP server listening on %s:%d", host, port)

    async def stop(self) -> None:
        await self._runner.cleanup()


async def serve_webhook(
    application: Application,  # type: ignore[type-arg]
    settings: Settings,
    clock: Callable[[], datetime],
    stopping: asyncio.Event,
) -> None:
    """Start the bot's services, serve the webhook until `stopping` is set, then stop cleanly:
    no new request, the ones in flight finished, then the services and the database."""
    server = HttpServer(http_app(application, settings, clock, webhook=True), settings)
    if application.post_init is not None:
        await application.post_init(application)
    try:
        await application.start()
        await server.start()
        log.info("webhook mode: waiting for Telegram's requests at %s", settings.webhook_path)
        await stopping.wait()
        log.info("stopping: finishing the requests in flight")
        await server.stop()
        await application.stop()
    finally:
        if application.running:  # the server could not start
            await application.stop()
        await application.shutdown()
        if application.post_shutdown is not None:
            await application.post_shutdown(application)
