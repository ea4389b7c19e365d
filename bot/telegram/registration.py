"""`coffeebot webhook set|delete|info`: tell Telegram where to post updates, once, from one
place (not from every replica's start). Pending updates are kept unless asked otherwise."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import TextIO

from telegram import Bot

from bot.mail.unsubscribe import public_url
from bot.settings import Settings, SettingsError
from bot.telegram.webhook import checked_secret, webhook_path

# Telegram's bounds for setWebhook's max_connections.
MAX_CONNECTIONS = range(1, 101)


class WebhookAction(StrEnum):
    SET = "set"
    DELETE = "delete"
    INFO = "info"


def registered_url(settings: Settings) -> str:
    if settings.webhook_url:
        return settings.webhook_url
    base = public_url(settings)
    if base is None:
        raise SettingsError("WEBHOOK_URL is not set, nor PUBLIC_URL to derive it from")
    return base + webhook_path(settings)


def check_registration(settings: Settings) -> tuple[str, str]:
    """The URL and secret to register; SettingsError naming the setting to fix."""
    if settings.webhook_max_connections not in MAX_CONNECTIONS:
        raise SettingsError(
            f"WEBHOOK_MAX_CONNECTIONS must be 1 to 100: {settings.webhook_max_connections}"
        )
    return registered_url(settings), checked_secret(settings)


async def register(
    settings: Settings,
    action: WebhookAction,
    allowed_updates: list[str],
    drop_pending_updates: bool,
    out: TextIO = sys.stdout,
) -> None:
    # Checked before any call, so that a setting to fix is said even with Telegram unreachable.
    url, secret = check_registration(settings) if action is WebhookAction.SET else ("", "")
    token = settings.telegram_bot_token or ""
    async with Bot(token, base_url=settings.telegram_api_base_url) as bot:
        if action is WebhookAction.SET:
            await bot.set_webhook(
                url,
                secret_token=secret,
                allowed_updates=allowed_updates,
                max_connections=settings.webhook_max_connections,
                drop_pending_updates=drop_pending_updates,
            )
            print(
                f"webhook set: {url} (max_connections {settings.webhook_max_connections})", file=out
            )
        elif action is WebhookAction.DELETE:
            await bot.delete_webhook(drop_pending_updates=drop_pending_updates)
            print("webhook deleted: the bot can poll again (coffeebot run)", file=out)
        info = await bot.get_webhook_info()
        print(f"url: {info.url or '(none: polling)'}", file=out)
        print(f"pending updates: {info.pending_update_count}", file=out)
        print(f"max connections: {info.max_connections or '-'}", file=out)
        print(f"allowed updates: {', '.join(info.allowed_updates or ()) or '-'}", file=out)
        if info.last_error_message:
            print(f"last error: {info.last_error_date} {info.last_error_message}", file=out)
