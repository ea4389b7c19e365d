"""The winners' side of travel expenses, around the claim conversation (conversations/expenses.py):
open an expense for each winner entitled to travel who accepted, then run their receipts,
amounts and presses through it, one committed step at a time. Nothing here imports Telegram:
the adapter hands over a `Receipt` it has hashed, or why a file is not one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bot.kept_replies import KeptReplies, KeptStep, encode
from bot.logs import failure
from bot.service import Outbound
from bot.settings import Settings
from conversations.catalogue import Catalogue
from conversations.expenses import (
    ClaimContext,
    ClaimInput,
    ClaimOutcome,
    ExpenseRules,
    Receipt,
    ReceiptKind,
    accepts,
    accepts_at,
    claim_step,
    open_claim,
)
from conversations.model import Reply
from conversations.money import format_amount
from conversations.outgoing import TelegramKind, TelegramMessage
from storage.expenses import ExpenseStore
from storage.ports import DuplicateUpdate

log = logging.getLogger(__name__)

# Until one expense exists, a text is not looked up as an amount: before the draw (the signup
# rush) that read would cost every message. Once one is seen, this process looks every time;
# another process's first one is noticed within this many seconds.
_RECHECK_SECONDS = 5.0
_SUFFIX = {ReceiptKind.PHOTO: ".jpg", ReceiptKind.PDF: ".pdf"}


def receipt_sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class ExpenseClaims:
    def __init__(
        self,
        store: ExpenseStore,
        texts: Catalogue,
        settings: Settings,
        clock: Callable[[], datetime],
        telegram_queued: Callable[[], None],
        kept: KeptReplies | None = None,
    ) -> None:
        self._store = store
        # With it, each step's replies are kept with its update until they have left.
        self._kept = kept
        self._texts = texts
        self._rules = settings.expense_rules
        self.download_timeout = settings.expense_download_timeout_seconds
        self._files_dir = Path(settings.expense_files_dir) if settings.expense_files_dir else None
        self._clock = clock
        self._telegram_queued = telegram_queued
        self._seen_one = False
        self._checked_at = -_RECHECK_SECONDS

    def _context(self) -> ClaimContext:
        return ClaimContext(self._clock(), self._texts, self._rules)

    async def open_due(self) -> int:
        """Open the expense of every accepted winner entitled to travel who has none, each with
        its request for receipts queued once; return how many were opened."""
        opened = 0
        for winner in await self._store.entitled_without_expense():
            ctx = self._context()
            outcome = open_claim(
                winner.ticket, winner.user_id, winner.language, winner.area, winner.travel, ctx
            )
            if outcome is None:
                continue
            cap = format_amount(self._rules.cap_cents(winner.travel), winner.language)
            asked = TelegramMessage(
                key=f"expense-request:{winner.ticket}",
                user_id=winner.user_id,
                kind=TelegramKind.EXPENSE_REQUEST,
                language=winner.language,
                text_key=f"expense.ask.{winner.travel}",
                params={"cap": cap},
            )
            if await self._store.open(outcome.expense, winner.claimant, asked, ctx.now):
                opened += 1
        if opened:
            self._seen_one = True
            self._telegram_queued()
        return opened

    @property
    def rules(self) -> ExpenseRules:
        return self._rules

    async def expects_receipt(self, user_id: int) -> bool:
        """Whether the person has an expense (then a file they send is read as a receipt)."""
        return await self._store.step_of(user_id) is not None

    async def may_have(self) -> bool:
        """Whether any expense may exist, to be worth looking a person's text up."""
        if self._seen_one:
            return True
        if time.monotonic() - self._checked_at >= _RECHECK_SECONDS:
            self._checked_at = time.monotonic()
            self._seen_one = await self._store.any()
        return self._seen_one

    async def handle(
        self,
        user_id: int,
        event: ClaimInput,
        update_id: int | None,
        outbound: Outbound,
        content: bytes | None = None,
    ) -> bool:
        """Run `event` through the person's expense; False when they have none, or when it is
        not for it (a text while no amount is awaited goes to the signup conversation).
        `content` is a receipt's file, kept (EXPENSE_FILES_DIR) once the receipt is taken."""
        # Most texts are not amounts: they are told apart before taking the person's turn.
        step = await self._store.step_of(user_id)
        if step is None or not accepts_at(step, event):
            return False
        async with self._store.serving(user_id) as store:
            expense = await store.by_user(user_id)
            if expense is None or not accepts(expense, event):
                return False
            ctx = self._context()
            try:
                outcome = claim_step(expense, event, ctx)
            except Exception as failed:
                # The expense is left as it was: nothing the winner sent before is lost. The log
                # names the error's class and place only: its message may quote what was typed.
                log.error("expense step failed for user %s: %s", user_id, failure(failed))
                error = Reply(self._texts.render(expense.language, "error.internal"))
                outcome = ClaimOutcome(expense, (error,))
            kept = encode(KeptStep(outcome.replies)) if self._kept is not None else None
            try:
                await store.save(outcome.expense, update_id, ctx.now, kept)
            except DuplicateUpdate:
                log.info("update %s already processed: not acted on again", update_id)
                redelivered = True
            else:
                redelivered = False
        if redelivered:
            await self._send_kept(update_id, outbound)
            return True
        taken = isinstance(event, Receipt) and any(
            claimed.receipt == event for claimed in outcome.expense.receipts
        )
        if content is not None and isinstance(event, Receipt) and taken:
            self.keep_file(content, event.sha256, event.kind)
        await self._deliver(outcome.replies, 0, update_id, outbound)
        return True

    async def _deliver(
        self, replies: tuple[Reply, ...], sent: int, update_id: int | None, outbound: Outbound
    ) -> None:
        for index in range(sent, len(replies)):
            await outbound.send(replies[index])
            if self._kept is not None and update_id is not None:
                # Once all have left they are forgotten: they quote what the winner sent.
                await self._kept.sent(update_id, index + 1, index + 1 == len(replies))

    async def _send_kept(self, update_id: int | None, outbound: Outbound) -> None:
        """A redelivered update: send what its committed step had not sent yet (a crash after
        the commit), and nothing else."""
        if self._kept is None or update_id is None:
            return
        found = await self._kept.unsent(update_id)
        if found is not None and found[1] < found[0].items:
            await self._deliver(found[0].replies, found[1], update_id, outbound)

    def keep_file(self, content: bytes, sha256: str, kind: ReceiptKind) -> None:
        """With EXPENSE_FILES_DIR set, a copy of the receipt readable by the bot's user only,
        named by its hash (the same file sent twice is one copy)."""
        if self._files_dir is None:
            return
        self._files_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._files_dir / f"{sha256}{_SUFFIX[kind]}"
        if path.exists():
            return
        # Written aside, then renamed: a crash never leaves half a file under the hash's name.
        partial = path.with_name(f".{path.name}.{os.getpid()}.part")
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(content)
        os.replace(partial, path)
