"""The Telegram adapter's composition root: the application around what bot/bootstrap.py
builds."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from telegram import Update
from telegram.error import Forbidden, NetworkError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, CallbackContext
from telegram.request import BaseRequest, HTTPXRequest

from bot.admin.purge import Purge
from bot.admin.service import AdminService
from bot.bootstrap import build_conversation, build_mailer, open_migrated_storage, utc_now
from bot.expense_claims import ExpenseClaims
from bot.kept_replies import KeptReplies
from bot.logs import failure, quiet_payload_loggers
from bot.periodic import PeriodicJobs
from bot.settings import HttpClient, Settings
from bot.telegram.handlers import TelegramHandlers, TelegramMessenger, command_menu
from bot.telegram.outage import ApiOutage
from bot.telegram.processor import FloodGuard, PerUserProcessor
from bot.telegram.request import AiohttpRequest, Timeouts
from bot.telegram.sender import TelegramOutboxSender
from bot.telegram.webhook import STORE
from bot.texts import load_catalogue
from conversations.catalogue import Catalogue
from storage import Storage
from storage.leadership import Lock
from storage.participants import MAIL_CHANNEL
from storage.telegram_outbox import TELEGRAM_CHANNEL

log = logging.getLogger(__name__)


def tune_gc(settings: Settings) -> None:
    """Moves the startup heap (modules, catalogues) out of the collector's sight, and collects
    the young generation less often: each step allocates thousands of short-lived objects, and
    the default (700) ran a collection every few steps, a tenth of the CPU."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(settings.gc_young_threshold, middle, old)


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
    quiet_payload_loggers()
    texts = load_catalogue(settings)
    handlers = TelegramHandlers(texts)
    processor = PerUserProcessor(
        settings.max_concurrent_updates,
        FloodGuard(
            settings.flood_max_messages, settings.flood_window_seconds, settings.flood_mute_seconds
        ),
        handlers.flood,
    )
    stores: list[Storage] = []
    tasks: list[asyncio.Task[None]] = []

    async def start(application: Application) -> None:  # type: ignore[type-arg]
        storage = await open_migrated_storage(settings, clock)
        stores.append(storage)
        forgotten = await storage.participants.forget_processed_before(
            clock() - timedelta(hours=settings.update_dedup_hours)
        )
        log.info("forgot %d processed update ids", forgotten)
        username = settings.telegram_bot_username or application.bot.username
        mailer = build_mailer(settings, storage, texts, username, clock)
        tasks.append(asyncio.create_task(mailer.run(), name="outbox sender"))
        handlers.service = build_conversation(
            settings, storage, texts, username, clock, mailer, keep_replies=True
        )
        application.bot_data[STORE] = storage
        interrupted = await storage.telegram.mark_interrupted()
        if interrupted:
            log.warning(
                "%d Telegram messages were being sent when the bot stopped: not sent again",
                interrupted,
            )
        messenger = TelegramMessenger(application.bot)
        telegram_sender = TelegramOutboxSender(
            storage.telegram, messenger, texts, settings, clock, settings.calendar.silent
        )
        # Other processes sharing a PostgreSQL database wake these senders too.
        await storage.database.on_change(MAIL_CHANNEL, mailer.wake)
        await storage.database.on_change(TELEGRAM_CHANNEL, telegram_sender.wake)
        tasks.append(asyncio.create_task(telegram_sender.run(), name="telegram outbox sender"))
        admin = AdminService(
            storage, texts, settings, clock, messenger, mailer.wake, telegram_sender.wake
        )
        handlers.admin = admin
        mailer.warn_with(admin.warn_email_cap)

        async def forget_ended_quotas() -> None:
            forgotten = await storage.participants.quotas.purge(clock())
            log.info("forgot %d quota counters whose window ended", forgotten)

        await forget_ended_quotas()
        claims = ExpenseClaims(
            storage.expenses, texts, settings, clock, telegram_sender.wake,
            KeptReplies(storage.database),
        )  # fmt: skip
        handlers.expenses = claims
        purge = Purge(storage, settings, clock)
        # In the one replica that leads (bot/periodic.py); in every one of them on SQLite.
        check = settings.leader_check_seconds
        periodic = PeriodicJobs(storage.database.leadership(Lock.PERIODIC_JOBS, check), check)
        periodic.add("draw", settings.draw_check_seconds, admin.tick)
        # Winners who accepted while no process was running are asked for receipts too.
        periodic.add("expenses", settings.draw_check_seconds, claims.open_due)
        periodic.add("quota purge", _QUOTA_PURGE_SECONDS, forget_ended_quotas)
        periodic.add("purge", settings.purge_every_hours * 3600, purge.due)
        tasks.append(asyncio.create_task(periodic.run(), name="periodic jobs"))
        await _set_commands(application, texts)

    async def stop(application: Application) -> None:  # type: ignore[type-arg]
        handlers.service = handlers.admin = None
        handlers.expenses = None
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
        .base_file_url(file_url(settings.telegram_api_base_url))
        .concurrent_updates(processor)
        .rate_limiter(
            AIORateLimiter(
                overall_max_rate=settings.telegram_rate_per_replica,
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
            # Never the update itself: it holds what the person typed or shared.
            update_id = update.update_id if isinstance(update, Update) else None
            error = context.error
            if isinstance(error, Forbidden):  # a blocked chat: routine, not a fault
                log.warning("update %s: the person's chat cannot be reached (Forbidden)", update_id)
            elif error is not None:
                log.error("error while handling update %s: %s", update_id, failure(error))

    application.add_error_handler(log_error)
    return application


def file_url(api_base_url: str) -> str:
    """Where files are downloaded from: Telegram serves them beside its API, under /file."""
    head, separator, tail = api_base_url.rstrip("/").rpartition("/bot")
    return f"{head}/file/bot{tail}" if separator else f"{api_base_url.rstrip('/')}/file/bot"


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


# Ended quota windows mean nothing; the shortest window is an hour.
_QUOTA_PURGE_SECONDS = 3600.0


async def _set_commands(application: Application, texts: Catalogue) -> None:  # type: ignore[type-arg]
    for language in texts.languages:
        await application.bot.set_my_commands(command_menu(texts, language), language_code=language)
    await application.bot.set_my_commands(command_menu(texts, texts.default_language))


OUTAGE = "api_outage"
ALLOWED_UPDATES = [Update.MESSAGE, Update.EDITED_MESSAGE, Update.CALLBACK_QUERY]
