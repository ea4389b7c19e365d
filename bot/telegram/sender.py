"""Sends what the Telegram outbox holds, one message at a time at a steady pace: a person who
blocked the bot is marked and left alone, flood control is waited out, network failures are
tried again with exponential backoff, and no message is ever sent twice by a restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.logs import failure
from bot.settings import Settings, SettingsError
from conversations.catalogue import Catalogue
from conversations.model import Button, Reply
from storage.ports import QueuedTelegram, TelegramOutbox

log = logging.getLogger(__name__)

_LONGEST_WAIT = timedelta(hours=1)


class ChatMessenger(Protocol):
    async def deliver(self, chat_id: int, reply: Reply) -> None:
        """Send to a chat, raising what Telegram answered (Forbidden, RetryAfter…)."""
        ...


def never(now: datetime) -> bool:
    return False


class TelegramOutboxSender:
    def __init__(
        self,
        outbox: TelegramOutbox,
        messenger: ChatMessenger,
        texts: Catalogue,
        settings: Settings,
        clock: Callable[[], datetime],
        hold_campaign: Callable[[datetime], bool] = never,
    ) -> None:
        if settings.telegram_outbox_messages_per_second <= 0:
            raise SettingsError("TELEGRAM_OUTBOX_MESSAGES_PER_SECOND must be above 0")
        self._outbox = outbox
        self._messenger = messenger
        self._texts = texts
        self._interval = 1 / settings.telegram_outbox_rate_per_replica
        self._batch_size = settings.telegram_outbox_batch_size
        self._max_attempts = settings.telegram_outbox_max_attempts
        self._retry_base = timedelta(seconds=settings.telegram_outbox_retry_base_seconds)
        self._poll = settings.telegram_outbox_poll_seconds
        self._clock = clock
        self._hold_campaign = hold_campaign
        self._wake = asyncio.Event()
        self._next_send = 0.0

    def wake(self) -> None:
        """Tells the sender that messages were just committed to the outbox."""
        self._wake.set()

    async def run(self) -> None:
        """Sends due messages until cancelled, as soon as woken or every poll interval."""
        while True:
            try:
                handled = await self.send_due()
            except Exception as error:
                log.error(
                    "the Telegram outbox sender failed: %s; trying again in %s s",
                    failure(error),
                    self._poll,
                )
                handled = 0
            if handled < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)
                self._wake.clear()

    async def send_due(self) -> int:
        """Send one batch of due messages; return how many were handled."""
        now = self._clock()
        batch = await self._outbox.due(now, self._batch_size, self._hold_campaign(now))
        for handled, queued in enumerate(batch):
            if queued.message.campaign and self._hold_campaign(self._clock()):
                # A silence began while this batch was leaving: the rest waits for its end.
                return handled
            wait = await self._send_one(queued)
            if wait is not None:
                # Flood control holds every chat: the rest of the batch waits too, then the
                # next batch, with the refused message in it, starts at once.
                await asyncio.sleep(wait.total_seconds())
                self._wake.set()
                return handled
        return len(batch)

    async def _send_one(self, queued: QueuedTelegram) -> timedelta | None:
        """Send one message; return how long Telegram asked to wait, if it refused for flood."""
        message = queued.message
        try:
            reply = self._render(queued)
        except Exception as error:
            log.error("cannot render Telegram message %s: %s", message.key, failure(error))
            await self._outbox.mark_failed(message.key, queued.attempts + 1, type(error).__name__)
            return None
        await self._pace()
        if not await self._outbox.start_sending(message.key):
            return None
        try:
            await self._messenger.deliver(message.user_id, reply)
        except Forbidden:
            log.info("Telegram message %s: the person blocked the bot", message.key)
            await self._outbox.mark_blocked(message.key, queued.attempts + 1, self._clock())
        except RetryAfter as error:
            wait = _seconds(error)
            log.warning("Telegram flood control: waiting %s before %s", wait, message.key)
            # Back in its place at the head of the queue, sent first once the wait is over;
            # a refusal for pace is not a failed attempt.
            await self._outbox.retry_later(
                message.key, queued.attempts, message.not_before or self._clock(), "RetryAfter"
            )
            return wait
        except BadRequest as error:
            log.error("giving up Telegram message %s: %s", message.key, type(error).__name__)
            await self._outbox.mark_failed(message.key, queued.attempts + 1, "BadRequest")
        except NetworkError as error:
            await self._try_later(queued, type(error).__name__)
        except TelegramError as error:
            log.error("giving up Telegram message %s: %s", message.key, type(error).__name__)
            await self._outbox.mark_failed(message.key, queued.attempts + 1, type(error).__name__)
        else:
            await self._outbox.mark_sent(message.key, self._clock())
        return None

    def _render(self, queued: QueuedTelegram) -> Reply:
        message = queued.message
        language = message.language
        return Reply(
            self._texts.render(language, message.text_key, **message.params),
            tuple(
                (Button(self._texts.render(language, label), data),)
                for label, data in message.buttons
            ),
        )

    async def _pace(self) -> None:
        """Space the sends `1 / TELEGRAM_OUTBOX_MESSAGES_PER_SECOND` apart."""
        loop = asyncio.get_running_loop()
        delay = self._next_send - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        self._next_send = max(self._next_send, loop.time()) + self._interval

    async def _try_later(self, queued: QueuedTelegram, error: str) -> None:
        key, attempts = queued.message.key, queued.attempts + 1
        if attempts < self._max_attempts:
            wait = min(self._retry_base * 2 ** (attempts - 1), _LONGEST_WAIT)
            log.warning("Telegram message %s: %s, trying again in %s", key, error, wait)
            await self._outbox.retry_later(key, attempts, self._clock() + wait, error)
        else:
            log.error("giving up Telegram message %s after %d attempts: %s", key, attempts, error)
            await self._outbox.mark_failed(key, attempts, error)


def _seconds(error: RetryAfter) -> timedelta:
    """The wait Telegram asked for: a number of seconds, or a timedelta with PTB_TIMEDELTA."""
    wait = error.retry_after
    return wait if isinstance(wait, timedelta) else timedelta(seconds=wait)
