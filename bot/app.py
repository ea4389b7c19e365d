"""The composition root: builds the Telegram application, the console and what they share."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from telegram import Update
from telegram.error import NetworkError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, CallbackContext
from telegram.request import BaseRequest, HTTPXRequest

from bot.admin import AdminService
from bot.aiohttp_request import AiohttpRequest, Timeouts
from bot.emails import EmailRenderer
from bot.eml import EmlFileTransport
from bot.kept_replies import KeptReplies
from bot.mailer import OutboxSender, Transport
from bot.outage import ApiOutage
from bot.processor import FloodGuard, PerUserProcessor
from bot.service import ConversationService
from bot.settings import HttpClient, Settings
from bot.smtp import SmtpTransport
from bot.telegram import TelegramHandlers, TelegramMessenger, command_menu
from bot.telegram_outbox import TelegramOutboxSender
from bot.texts import load_catalogue
from bot.unsubscribe import OneClickLinks
from bot.webhook import STORE, public_url
from conversations.catalogue import Catalogue
from storage import open_store
from storage.sqlite import SqliteStore
from storage.telegram_outbox import SqliteTelegramOutbox

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


async def open_migrated_store(settings: Settings, clock: Callable[[], datetime]) -> SqliteStore:
    store = await open_store(
        settings.database_url,
        settings.sqlite_busy_timeout_ms,
        settings.sqlite_checkpoint_every_commits,
    )
    try:
        for applied in await store.migrate(clock()):
            log.info("migrated the database: %s", applied)
        await store.use_address_key(settings.address_hash_key)
        interrupted = await store.mark_interrupted()
        if interrupted:
            log.warning(
                "%d emails were being sent when the bot stopped: not sent again", interrupted
            )
    except BaseException:
        await store.close()
        raise
    return store


def tune_gc(settings: Settings) -> None:
    """Moves the startup heap (modules, catalogues) out of the collector's sight, and collects
    the young generation less often: each step allocates thousands of short-lived objects, and
    the default (700) ran a collection every few steps, a tenth of the CPU."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(settings.gc_young_threshold, middle, old)


def build_mailer(
    settings: Settings,
    store: SqliteStore,
    texts: Catalogue,
    bot_username: str,
    clock: Callable[[], datetime],
) -> OutboxSender:
    transport: Transport
    if settings.smtp_url:
        transport = SmtpTransport(settings.smtp_url, settings.smtp_timeout_seconds)
    else:
        transport = EmlFileTransport(settings.mail_outbox_dir)
    base = public_url(settings)
    one_click = OneClickLinks(base, store.address_hash).url if base else None
    renderer = EmailRenderer(texts, settings.mail_from, bot_username, one_click)
    return OutboxSender(store, transport, renderer, settings, clock)


def build_application(
    settings: Settings,
    *,
    request: BaseRequest | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> Application:  # type: ignore[type-arg]
    """Build the bot; its database opens when the application starts and closes when it stops.

    `request` replaces the HTTP layer, for tests and benchmarks that answer the Bot API in-process.
    """
    if not settings.telegram_bot_token:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    texts = load_catalogue(settings)
    handlers = TelegramHandlers(texts)
    processor = PerUserProcessor(
        settings.max_concurrent_updates,
        FloodGuard(
            settings.flood_max_messages, settings.flood_window_seconds, settings.flood_mute_seconds
        ),
        handlers.flood,
    )
    stores: list[SqliteStore] = []
    tasks: list[asyncio.Task[None]] = []

    async def start(application: Application) -> None:  # type: ignore[type-arg]
        store = await open_migrated_store(settings, clock)
        stores.append(store)
        forgotten = await store.forget_processed_before(
            clock() - timedelta(hours=settings.update_dedup_hours)
        )
        log.info("forgot %d processed update ids", forgotten)
        username = settings.telegram_bot_username or application.bot.username
        mailer = build_mailer(settings, store, texts, username, clock)
        tasks.append(asyncio.create_task(mailer.run(), name="outbox sender"))
        handlers.service = ConversationService(
            store, texts, settings, clock, username, mailer.wake, KeptReplies(store)
        )
        application.bot_data[STORE] = store
        telegram_outbox = SqliteTelegramOutbox(store)
        interrupted = await telegram_outbox.mark_interrupted()
        if interrupted:
            log.warning(
                "%d Telegram messages were being sent when the bot stopped: not sent again",
                interrupted,
            )
        messenger = TelegramMessenger(application.bot)
        telegram_sender = TelegramOutboxSender(
            telegram_outbox, messenger, texts, settings, clock, settings.calendar.silent
        )
        tasks.append(asyncio.create_task(telegram_sender.run(), name="telegram outbox sender"))
        admin = AdminService(
            store, texts, settings, clock, messenger, mailer.wake, telegram_sender.wake
        )
        handlers.admin = admin
        tasks.append(
            asyncio.create_task(_every(settings.draw_check_seconds, admin.tick), name="draw")
        )
        await _set_commands(application, texts)

    async def stop(application: Application) -> None:  # type: ignore[type-arg]
        handlers.service = handlers.admin = None
        application.bot_data.pop(STORE, None)
        await outage.stop()
        while tasks:
            task = tasks.pop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while stores:
            await stores.pop().close()

    builder = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token)
        .base_url(settings.telegram_api_base_url)
        .concurrent_updates(processor)
        .rate_limiter(
            AIORateLimiter(
                overall_max_rate=settings.telegram_max_messages_per_second,
                max_retries=settings.telegram_max_retries,
            )
        )
        .post_init(start)
        .post_shutdown(stop)
    )
    if request is None:
        builder = builder.request(telegram_request(settings, settings.max_concurrent_updates))
        # One long poll at a time.
        builder = builder.get_updates_request(telegram_request(settings, 1))
    else:
        builder = builder.request(request).get_updates_request(request)
    application = builder.build()
    handlers.register(application)
    outage = ApiOutage(settings.telegram_retry_max_seconds)
    # The command line's stop signal cuts an outage's wait between polls short.
    application.bot_data[OUTAGE] = outage

    async def log_error(update: object, context: CallbackContext) -> None:  # type: ignore[type-arg]
        if update is None and isinstance(context.error, NetworkError):
            outage.failed(application.bot, context.error)  # a failed poll: said once per outage
        else:
            log.error("error while handling %r", update, exc_info=context.error)

    application.add_error_handler(log_error)
    return application


def telegram_request(settings: Settings, pool_size: int) -> BaseRequest:
    """The HTTP client the settings choose, with a keep-alive pool of `pool_size` connections."""
    if settings.telegram_http_client is HttpClient.HTTPX:
        return HTTPXRequest(
            connection_pool_size=pool_size,
            read_timeout=settings.telegram_read_timeout_seconds,
            write_timeout=settings.telegram_write_timeout_seconds,
            connect_timeout=settings.telegram_connect_timeout_seconds,
            pool_timeout=settings.telegram_pool_timeout_seconds,
            media_write_timeout=settings.telegram_media_write_timeout_seconds,
        )
    timeouts = Timeouts(
        read=settings.telegram_read_timeout_seconds,
        write=settings.telegram_write_timeout_seconds,
        connect=settings.telegram_connect_timeout_seconds,
        pool=settings.telegram_pool_timeout_seconds,
        media_write=settings.telegram_media_write_timeout_seconds,
    )
    return AiohttpRequest(pool_size, timeouts)


async def _every(seconds: float, job: Callable[[], Awaitable[None]]) -> None:
    """Runs `job` every `seconds` until cancelled; a failure is logged and the next run happens."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception:
            log.exception("periodic %s failed", getattr(job, "__qualname__", job))


async def _set_commands(application: Application, texts: Catalogue) -> None:  # type: ignore[type-arg]
    for language in texts.languages:
        await application.bot.set_my_commands(command_menu(texts, language), language_code=language)
    await application.bot.set_my_commands(command_menu(texts, texts.default_language))


OUTAGE = "api_outage"
ALLOWED_UPDATES = [Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY]
