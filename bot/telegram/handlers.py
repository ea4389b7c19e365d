"""The Telegram adapter: updates become conversation inputs, replies become messages."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from telegram import (
    Bot,
    BotCommand,
    InputFile,
    Update,
    User,
)
from telegram.constants import ChatType
from telegram.error import BadRequest, Forbidden
from telegram.ext import Application, CallbackQueryHandler, ContextTypes, MessageHandler, filters

from bot.admin.announcements import COMMANDS as ANNOUNCE_COMMANDS
from bot.admin.announcements import PRESS_PREFIX as ANNOUNCE_PRESS
from bot.admin.service import AdminService
from bot.admin.tools import COMMAND_UPDATE
from bot.expense_claims import ExpenseClaims
from bot.service import ConversationService, Incoming
from bot.telegram.receipts import receipt_of
from conversations.catalogue import Catalogue
from conversations.expenses import ClaimInput, ReceiptKind
from conversations.model import (
    Command,
    Edited,
    Input,
    Press,
    Profile,
    Reply,
    SharedContact,
    Text,
    Unsupported,
)

log = logging.getLogger(__name__)


class TelegramMessenger:
    """Sends to any chat; a person who blocked the bot is logged, not an error."""

    def __init__(self, bot: Bot) -> None:
        self._bot = bot

    async def send(self, chat_id: int, reply: Reply) -> None:
        with _unreachable_logged(chat_id):
            await self.deliver(chat_id, reply)

    async def deliver(self, chat_id: int, reply: Reply) -> None:
        """Sends, letting Telegram's refusals through to a caller that records them."""
        await send_text(self._bot, chat_id, reply)

    async def send_document(
        self, chat_id: int, filename: str, content: bytes, caption: str
    ) -> None:
        with _unreachable_logged(chat_id):
            await self._bot.send_document(
                chat_id, InputFile(content, filename=filename), caption=caption
            )

    async def send_photo(self, chat_id: int, content: bytes, caption: str) -> None:
        with _unreachable_logged(chat_id):
            await self._bot.send_photo(
                chat_id, InputFile(content, filename="chart.png"), caption=caption
            )

    async def send_receipt(
        self, chat_id: int, file_id: str, kind: ReceiptKind, caption: str
    ) -> None:
        """A winner's receipt shown again from Telegram's copy, by its file id."""
        with _unreachable_logged(chat_id):
            if kind is ReceiptKind.PHOTO:
                await self._bot.send_photo(chat_id, file_id, caption=caption)
            else:
                await self._bot.send_document(chat_id, file_id, caption=caption)


@contextmanager
def _unreachable_logged(chat_id: int) -> Iterator[None]:
    try:
        yield
    except Forbidden as error:
        log.warning("chat %s cannot be reached: %s", chat_id, type(error).__name__)


class TelegramOutbound:
    """Sends a conversation's replies to one private chat."""

    def __init__(self, bot: Bot, chat_id: int, pressed_message_id: int | None = None) -> None:
        self._bot = bot
        self._chat_id = chat_id
        self._pressed_message_id = pressed_message_id

    async def send(self, reply: Reply) -> None:
        if reply.replaces_pressed and self._pressed_message_id is not None:
            inline = _inline_keyboard(reply)
            try:
                await _call(
                    self._bot,
                    "editMessageText",
                    chat_id=self._chat_id,
                    message_id=self._pressed_message_id,
                    text=reply.text,
                    reply_markup=inline,
                )
                return
            except BadRequest as error:
                # Pressing a button twice edits to the same text, which Telegram refuses.
                if "not modified" in str(error).lower():
                    return
                log.info(
                    "could not edit message %s: %s", self._pressed_message_id, type(error).__name__
                )
        await send_text(self._bot, self._chat_id, reply)

    async def send_document(self, filename: str, content: bytes, caption: str) -> None:
        await self._bot.send_document(
            self._chat_id, InputFile(content, filename=filename), caption=caption
        )


async def send_text(bot: Bot, chat_id: int, reply: Reply) -> dict[str, Any]:
    """Sends a reply; returns the sent message as Telegram's JSON (its `message_id`…)."""
    sent: dict[str, Any] = await _call(
        bot, "sendMessage", chat_id=chat_id, text=reply.text, reply_markup=_markup(reply)
    )
    return sent


async def _call(bot: Bot, method: str, **parameters: Any) -> Any:
    """A Bot API call whose answer stays JSON: building python-telegram-bot's objects for the
    markup and for a reply that nobody reads was a tenth of a step's CPU. `Bot._post` is what
    the public methods and `do_api_request` call; it keeps the rate limiter and errors."""
    return await bot._post(method, parameters)


def _inline_keyboard(reply: Reply) -> dict[str, Any] | None:
    if not reply.buttons:
        return None
    rows = [[{"text": b.label, "callback_data": b.key} for b in row] for row in reply.buttons]
    return {"inline_keyboard": rows}


def _markup(reply: Reply) -> dict[str, Any]:
    inline = _inline_keyboard(reply)
    if inline is not None:
        return inline
    if reply.contact_button:
        button = {"text": reply.contact_button, "request_contact": True}
        return {"keyboard": [[button]], "resize_keyboard": True, "one_time_keyboard": True}
    # The contact keyboard stays on screen until a message takes it away.
    return {"remove_keyboard": True}


def profile_of(user: User) -> Profile:
    return Profile(user.first_name, user.last_name, user.language_code)


def command_of(text: str) -> Command:
    head, _, argument = text.strip().partition(" ")
    name = head[1:].split("@", 1)[0]
    return Command(name.lower(), argument.strip())


class TelegramHandlers:
    """The handlers, bound to the service that the application builds when it starts."""

    def __init__(self, texts: Catalogue) -> None:
        self._texts = texts
        self.service: ConversationService | None = None
        self.admin: AdminService | None = None
        self.expenses: ExpenseClaims | None = None

    def _admin_for(self, update: Update) -> AdminService | None:
        user = update.effective_user
        return self.admin if self.admin and user and self.admin.is_admin(user.id) else None

    async def _run(
        self, update: Update, event: Input, pressed_message_id: int | None = None
    ) -> None:
        user, chat = update.effective_user, update.effective_chat
        if user is None or chat is None or self.service is None:
            return
        outbound = TelegramOutbound(chat.get_bot(), chat.id, pressed_message_id)
        incoming = Incoming(user.id, profile_of(user), event, update.update_id)
        await self.service.handle(incoming, outbound)

    async def command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Runs a command such as /start, with its deep-link payload."""
        assert update.message and update.message.text and update.effective_user
        command = command_of(update.message.text)
        admin = self._admin_for(update)
        if admin and command.name in ANNOUNCE_COMMANDS:
            language = self._texts.language_for(update.effective_user.language_code)
            await admin.announcements.command(update.effective_user.id, language)
            return
        if admin and admin.handles(command.name):
            language = self._texts.language_for(update.effective_user.language_code)
            running = COMMAND_UPDATE.set(update.update_id)
            try:
                await admin.command(
                    update.effective_user.id, language, command.name, command.argument
                )
            finally:
                COMMAND_UPDATE.reset(running)
            return
        await self._run(update, command)

    async def _claimed(
        self,
        update: Update,
        event: ClaimInput,
        pressed_message_id: int | None = None,
        content: bytes | None = None,
    ) -> bool:
        """Runs the input through the person's travel expense, if it is for it."""
        user, chat = update.effective_user, update.effective_chat
        if user is None or chat is None or self.expenses is None:
            return False
        if not await self.expenses.may_have():
            return False
        outbound = TelegramOutbound(chat.get_bot(), chat.id, pressed_message_id)
        return await self.expenses.handle(user.id, event, update.update_id, outbound, content)

    async def text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Answers the current question with the typed text (a receipt's amount, when one is
        awaited)."""
        assert update.message and update.message.text is not None
        admin, user = self._admin_for(update), update.effective_user
        if admin and user and await admin.announcements.awaits_text(user.id):
            language = self._texts.language_for(user.language_code)
            await admin.announcements.text(user.id, language, update.message.text)
            return
        if await self._claimed(update, Text(update.message.text)):
            return
        await self._run(update, Text(update.message.text))

    async def attachment(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A photo or a file: a receipt, from a winner whose expense waits for one; anything
        else is answered as unsupported."""
        user, message = update.effective_user, update.message
        claims = self.expenses
        if (
            claims is not None
            and user is not None
            and message is not None
            and await claims.may_have()
            and await claims.expects_receipt(user.id)
        ):
            event, content = await receipt_of(
                message, context.bot, claims.rules, claims.download_timeout
            )
            if await self._claimed(update, event, content=content):
                return
        await self._run(update, Unsupported())

    async def contact(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Answers the phone question with a shared contact, noting whether it is the sender's."""
        assert update.message and update.message.contact and update.effective_user
        contact = update.message.contact
        is_own = contact.user_id == update.effective_user.id
        await self._run(update, SharedContact(contact.phone_number, is_own))

    async def press(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Answers a button press, on the message that carried the button."""
        query = update.callback_query
        assert query is not None
        # A webhook retry of a press answers it again, which Telegram refuses once the query is
        # old: the press must still be acted on (or found already processed).
        with contextlib.suppress(BadRequest):
            await query.answer()
        data, user = query.data or "", query.from_user
        admin = self._admin_for(update)
        if admin and data.startswith("admin."):
            await admin.press(user.id, self._texts.language_for(user.language_code), data)
        elif admin and data.startswith(ANNOUNCE_PRESS):
            language = self._texts.language_for(user.language_code)
            await admin.announcements.press(user.id, language, data)
        elif self.admin and data.startswith("win."):
            await self.admin.winner_answer(user.id, data)
            if self.expenses:
                await self.expenses.open_due()
        else:
            message_id = query.message.message_id if query.message else None
            if data.startswith("expense.") and await self._claimed(update, Press(data), message_id):
                return
            await self._run(update, Press(data), message_id)

    async def edited(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Says that edits are not read, and asks the current question again."""
        await self._run(update, Edited())

    async def unsupported(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Says that stickers, photos, voice notes… cannot be read, and asks again."""
        await self._run(update, Unsupported())

    async def group(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Points a group to a private chat with the bot, storing nothing."""
        assert update.effective_message
        link = f"https://t.me/{context.bot.username}"
        user = update.effective_user
        language = self._texts.language_for(user.language_code if user else None)
        await update.effective_message.reply_text(
            self._texts.render(language, "group.private_only", link=link)
        )

    async def flood(self, update: Update) -> None:
        """Warns a user who floods the bot that they are ignored for a while."""
        user, chat = update.effective_user, update.effective_chat
        if user is None or chat is None or self.service is None or chat.type != ChatType.PRIVATE:
            return
        await self.service.warn_flood(
            user.id, profile_of(user), TelegramOutbound(chat.get_bot(), chat.id)
        )

    def register(self, application: Application) -> None:  # type: ignore[type-arg]
        private = filters.ChatType.PRIVATE
        message = filters.UpdateType.MESSAGE
        application.add_handlers(
            [
                MessageHandler(private & message & filters.COMMAND, self.command),
                MessageHandler(private & message & filters.CONTACT, self.contact),
                MessageHandler(private & message & filters.TEXT, self.text),
                MessageHandler(private & filters.UpdateType.EDITED, self.edited),
                MessageHandler(private & message & RECEIPT_LIKE, self.attachment),
                MessageHandler(private & message, self.unsupported),
                CallbackQueryHandler(self.press),
                MessageHandler(~private & filters.COMMAND, self.group),
            ]
        )


# What a winner might send as a receipt: photos and PDFs are read, the rest refused kindly.
RECEIPT_LIKE = (
    filters.PHOTO
    | filters.Document.ALL
    | filters.VIDEO
    | filters.VOICE
    | filters.AUDIO
    | filters.ANIMATION
    | filters.VIDEO_NOTE
    | filters.Sticker.ALL
)


def command_menu(texts: Catalogue, language: str) -> list[BotCommand]:
    menu = texts.texts[language]
    return [
        BotCommand(key.removeprefix("menu."), description)
        for key, description in menu.items()
        if key.startswith("menu.")
    ]
