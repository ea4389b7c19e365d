"""The one place that builds what every entry point shares: the settings' stores (migrated),
the mailer, the services. `coffeebot run` (bot/telegram/application.py), the console and every
command of the CLI start here; nothing here imports Telegram."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from bot.kept_replies import KeptReplies
from bot.mail.emails import EmailRenderer
from bot.mail.eml import EmlFileTransport, EmlFolder
from bot.mail.sender import OutboxSender, Transport
from bot.mail.smtp import SmtpTransport
from bot.mail.unsubscribe import OneClickLinks, public_url
from bot.secret_key import check_secret_key, load_secret_key
from bot.service import ConversationService
from bot.settings import Settings
from conversations.catalogue import Catalogue
from storage import DatabaseOptions, Storage, open_storage
from storage.migrator import migrate

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


def database_options(settings: Settings) -> DatabaseOptions:
    return DatabaseOptions(
        settings.sqlite_busy_timeout_ms,
        settings.sqlite_checkpoint_every_commits,
        settings.database_pool_size,
    )


async def open_migrated_storage(settings: Settings, clock: Callable[[], datetime]) -> Storage:
    """The stores, migrated, keyed, with the emails a crash left leaving given up."""
    storage = await open_storage(settings.database_url, database_options(settings))
    try:
        # Before migrating: a former version's key is moved out of the database first.
        key = await load_secret_key(settings, storage.database)
        for applied in await migrate(storage.database, clock()):
            log.info("migrated the database: %s", applied)
        await check_secret_key(settings, storage.database, key)
        storage.participants.use_key(key)
        storage.participants.use_tag_providers(settings.address_tag_providers)
        keyed, clashes = await storage.participants.key_entries()
        if keyed or clashes:
            log.info("keyed %d entries by mailbox; %d share a mailbox", keyed, clashes)
        interrupted = await storage.outbox.mark_interrupted()
        if interrupted:
            log.warning(
                "%d emails were being sent when the bot stopped: not sent again", interrupted
            )
    except BaseException:
        await storage.close()
        raise
    return storage


@asynccontextmanager
async def migrated_storage(
    settings: Settings, clock: Callable[[], datetime] = utc_now
) -> AsyncIterator[Storage]:
    storage = await open_migrated_storage(settings, clock)
    try:
        yield storage
    finally:
        await storage.close()


def build_mailer(
    settings: Settings,
    storage: Storage,
    texts: Catalogue,
    bot_username: str,
    clock: Callable[[], datetime],
) -> OutboxSender:
    transport: Transport
    files = EmlFolder(settings.mail_outbox_dir)
    if settings.smtp_url:
        transport = SmtpTransport(settings.smtp_url, settings.smtp_timeout_seconds)
    else:
        transport = EmlFileTransport(files)
    base = public_url(settings)
    one_click = OneClickLinks(base, storage.participants.address_hash).url if base else None
    renderer = EmailRenderer(texts, settings.mail_from, bot_username, one_click)
    return OutboxSender(
        storage.outbox, transport, renderer, settings, clock, files, storage.participants.quotas
    )


def build_conversation(
    settings: Settings,
    storage: Storage,
    texts: Catalogue,
    bot_username: str,
    clock: Callable[[], datetime],
    mailer: OutboxSender,
    keep_replies: bool = False,
) -> ConversationService:
    """The conversation; with `keep_replies`, each step's replies are kept with its update id
    until they have left (so a redelivered update sends what a crash kept back)."""
    kept = KeptReplies(storage.database) if keep_replies else None

    async def erased() -> None:
        # The rows are gone: now their copies in the WAL and the person's .eml files.
        await storage.database.scrub()
        await mailer.erased()

    return ConversationService(
        storage.participants, texts, settings, clock, bot_username, mailer.wake, kept, erased
    )
