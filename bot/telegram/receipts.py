"""A winner's photo or PDF, as a receipt: the file is downloaded through the Bot API only to be
hashed (and kept where EXPENSE_FILES_DIR says); what is stored is Telegram's file id and the
SHA-256. Anything else (another file type, a file too big, one Telegram would not give) comes out
as the reason it is not a receipt, for the claim conversation to say."""

from __future__ import annotations

import logging

from telegram import Bot, Message
from telegram.error import TelegramError

from bot.expense_claims import receipt_sha256
from conversations.expenses import ExpenseRules, NotAReceipt, Receipt, ReceiptKind

log = logging.getLogger(__name__)

PDF_TYPE = "application/pdf"
# Every PDF file starts so: a renamed file of another kind is not taken for one.
_PDF_MAGIC = b"%PDF-"


def _too_big(rules: ExpenseRules) -> NotAReceipt:
    return NotAReceipt("too_big", (("max", rules.receipt_max_mb),))


async def receipt_of(
    message: Message, bot: Bot, rules: ExpenseRules, download_seconds: float
) -> tuple[Receipt | NotAReceipt, bytes | None]:
    """The message's file as a receipt with its content, or why it is not one."""
    if message.photo:
        # Telegram sends each photo in several sizes, the largest last.
        largest = message.photo[-1]
        kind, file_id, unique_id, size = (
            ReceiptKind.PHOTO, largest.file_id, largest.file_unique_id, largest.file_size
        )  # fmt: skip
    elif message.document and (
        message.document.mime_type == PDF_TYPE
        or (message.document.file_name or "").lower().endswith(".pdf")
    ):
        document = message.document
        kind, file_id, unique_id, size = (
            ReceiptKind.PDF, document.file_id, document.file_unique_id, document.file_size
        )  # fmt: skip
    else:
        return NotAReceipt("file_type"), None
    if size is not None and size > rules.receipt_max_bytes:
        return _too_big(rules), None
    try:
        file = await bot.get_file(file_id)
        content = bytes(await file.download_as_bytearray(read_timeout=download_seconds))
    except TelegramError as error:
        log.warning("could not download a receipt (%s): %s", kind, error)
        return NotAReceipt("unreadable_file"), None
    if len(content) > rules.receipt_max_bytes:
        return _too_big(rules), None
    if kind is ReceiptKind.PDF and not content.startswith(_PDF_MAGIC):
        return NotAReceipt("file_type"), None
    sha256 = receipt_sha256(content)
    return Receipt(file_id, unique_id, sha256, kind, len(content)), content
