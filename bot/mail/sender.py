"""Sends what the outbox holds: in batches over one connection, retrying transient failures
with exponential backoff, a bounded number of times, and never sending an email twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from email.message import Message
from typing import Protocol

from bot.logs import failure
from bot.mail.emails import EmailRenderer
from bot.mail.eml import EmlFileTransport, EmlFolder
from bot.settings import Settings
from conversations.model import Quota
from conversations.quotas import EVERYONE
from storage.ports import Outbox, OutboxEmail
from storage.quotas import Quotas

log = logging.getLogger(__name__)

_LONGEST_WAIT = timedelta(hours=1)
# Answers to what a person just did; everything else is campaign mail, held during silence.
DIRECT_KINDS = frozenset({"confirmation", "address_taken"})
# Told when the hourly cap pauses the emails, with the moment they start again.
CapWarning = Callable[[datetime], Awaitable[None]]


class MailError(Exception):
    """A failure as the outbox and the logs keep it: the SMTP code and the error's class only,
    never the server's words, which often quote the recipient's address."""

    def __init__(self, code: int | None, cause: BaseException) -> None:
        self.code = code
        name = type(cause).__name__
        super().__init__(f"{code} {name}" if code is not None else name)


class TransientMailError(MailError):
    """Worth trying again later: the server is down, busy, or said 4xx."""


class PermanentMailError(MailError):
    """Not worth trying again: the server said 5xx for this message."""


class Connection(Protocol):
    async def send(self, key: str, message: Message) -> None: ...


class Transport(Protocol):
    def connect(self) -> AbstractAsyncContextManager[Connection]: ...


class OutboxSender:
    def __init__(
        self,
        outbox: Outbox,
        transport: Transport,
        renderer: EmailRenderer,
        settings: Settings,
        clock: Callable[[], datetime],
        files: EmlFolder,
        quotas: Quotas | None = None,
    ) -> None:
        self._outbox = outbox
        # The .eml files: the delivery itself when the transport writes them, else what a
        # rehearsal left, deleted as the real server takes each email over.
        self._files = files
        self._files_are_delivery = isinstance(transport, EmlFileTransport)
        self._sweep_after_batch = False
        # EMAILS_PER_HOUR, counted across processes; None: no cap (a tool sending a few).
        self._quotas = quotas
        self._per_hour = settings.emails_per_hour
        self._paused_until: datetime | None = None
        self._warn: CapWarning | None = None
        self._calendar = settings.calendar
        self._transport = transport
        self._renderer = renderer
        self._batch_size = settings.outbox_batch_size
        self._max_attempts = settings.outbox_max_attempts
        self._retry_base = timedelta(seconds=settings.outbox_retry_base_seconds)
        self._poll = settings.outbox_poll_seconds
        self._clock = clock
        self._wake = asyncio.Event()

    def warn_with(self, warn: CapWarning) -> None:
        """Who is told, once an hour at most, that the cap paused the emails."""
        self._warn = warn

    def wake(self) -> None:
        """Tells the sender that emails were just committed to the outbox."""
        self._wake.set()

    async def erased(self) -> None:
        """Deletes the .eml files whose outbox rows an erasure deleted; once more after the
        batch being sent, which may have been writing one of the person's emails meanwhile."""
        self._sweep_after_batch = True
        await self._files.sweep(self._outbox.kept)

    async def run(self) -> None:
        """Sends due emails until cancelled, as soon as woken or every poll interval."""
        try:
            await self.erased()  # what an erasure cut short by a crash left behind
        except Exception as error:
            log.warning("cannot sweep the .eml files: %s", type(error).__name__)
        while True:
            try:
                sent = await self.send_due()
                if self._sweep_after_batch:
                    self._sweep_after_batch = False
                    await self._files.sweep(self._outbox.kept)
            except Exception as error:
                log.error(
                    "the outbox sender failed: %s; trying again in %s s", failure(error), self._poll
                )
                sent = 0
            if sent < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll)
                self._wake.clear()

    async def send_due(self) -> int:
        """Send one batch of due emails over one connection; return how many were handled.

        During electoral silence only direct answers leave; the rest waits in the outbox.
        """
        now = self._clock()
        if self._paused_until is not None and now < self._paused_until:
            return 0
        self._paused_until = None
        only = DIRECT_KINDS if self._calendar.silent(now) else None
        batch = await self._outbox.due(now, self._batch_size, only)
        if not batch:
            return 0
        waiting = list(batch)
        delivered: str | None = None
        try:
            async with self._transport.connect() as connection:
                while waiting:
                    if not await self._within_cap():
                        break
                    delivered = await self._send_one(connection, waiting[0], delivered)
                    waiting.pop(0)
                    # Rendering and a file or a fast server's answer need not wait: a batch
                    # would hold the event loop, and every person's steps, until its end.
                    await asyncio.sleep(0)
        except TransientMailError as error:
            log.warning("cannot send %d emails now: %s", len(waiting), error)
            for email in waiting:
                await self._failed(email, error, transient=True)
        finally:
            if delivered is not None:
                await self._mark_sent(delivered)
        return len(batch) - len(waiting)

    async def _within_cap(self) -> bool:
        """Count one more email this hour, or pause until the hour's end when the cap is
        reached: the rest stays in the outbox, and the admins hear of it once."""
        if self._quotas is None:
            return True
        now = self._clock()
        if await self._quotas.take(Quota.OUTGOING_EMAILS, EVERYONE, now, self._per_hour):
            return True
        use = await self._quotas.used(Quota.OUTGOING_EMAILS, EVERYONE, now)
        self._paused_until = use.until or now + _LONGEST_WAIT
        log.warning("EMAILS_PER_HOUR reached: emails paused until %s", self._paused_until)
        first = await self._quotas.take(Quota.EMAIL_CAP_WARNING, EVERYONE, now, 1)
        if first and self._warn is not None:
            try:
                await self._warn(self._paused_until)
            except Exception:
                log.exception("could not tell the admins that the emails are paused")
        return False

    async def _mark_sent(self, key: str) -> None:
        await self._outbox.mark_sent(key, self._clock())
        if not self._files_are_delivery:
            self._files.forget([key])

    async def _send_one(
        self, connection: Connection, email: OutboxEmail, delivered: str | None
    ) -> str | None:
        """Send one email; return its key when it left and is not yet marked sent.

        Each email is marked as leaving just before it does, in the same transaction that marks
        the previous one sent: a crash leaves at most one email in doubt, for one write each.
        """
        try:
            message = self._renderer.render(email)
        except Exception as error:
            log.error("cannot render email %s: %s", email.key, failure(error))
            await self._failed(email, MailError(None, error), transient=False)
            return delivered
        if not await self._outbox.start_sending(email.key, self._clock(), delivered):
            return delivered
        if delivered is not None and not self._files_are_delivery:
            self._files.forget([delivered])
        try:
            await connection.send(email.key, message)
        except TransientMailError as error:
            await self._failed(email, error, transient=True)
        except PermanentMailError as error:
            await self._failed(email, error, transient=False)
        else:
            return email.key
        return None

    async def _failed(self, email: OutboxEmail, error: MailError, transient: bool) -> None:
        attempts = email.attempts + 1
        if transient and attempts < self._max_attempts:
            wait = min(self._retry_base * 2 ** (attempts - 1), _LONGEST_WAIT)
            await self._outbox.retry_later(email.key, attempts, self._clock() + wait, str(error))
        else:
            log.error("giving up email %s after %d attempts: %s", email.key, attempts, error)
            await self._outbox.mark_failed(email.key, attempts, str(error))
