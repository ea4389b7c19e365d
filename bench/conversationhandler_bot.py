"""The usual way to write this bot, for comparison: a ConversationHandler whose state lives in
PicklePersistence, processing one update at a time as ConversationHandler requires. Its steps
match the benchmark's signup and run the same validators."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from telegram import Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    BaseUpdateProcessor,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    PicklePersistence,
    filters,
)
from telegram.request import BaseRequest

from conversations.validators import (
    check_email,
    check_name,
    check_phone,
    check_postcode,
    check_question,
)

# One check per step of tests.telegram_fakes' signup, None where the step is a button press.
CHECKS: list[Callable[[str], object] | None] = [
    None, None, None, None, None, None,  # join, three consents, continue, profile name
    lambda text: check_name(text, 60),
    check_phone,
    lambda text: check_email(text, False),
    check_postcode,
    None,
    lambda text: check_email(text, False),
    None,
    lambda text: check_question(text, 500),
    None,
]  # fmt: skip


def build_conversationhandler_bot(
    token: str, request: BaseRequest, persistence_path: Path, processor: BaseUpdateProcessor
) -> Application:  # type: ignore[type-arg]
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
        assert update.effective_chat
        await context.bot.send_message(update.effective_chat.id, "Bienvenue")
        return 0

    def answer(state: int) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], object]:
        async def callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
            assert update.effective_chat and context.user_data is not None
            if update.callback_query:
                await update.callback_query.answer()
                value = update.callback_query.data or ""
            elif update.message and update.message.contact:
                value = update.message.contact.phone_number
            else:
                value = (update.message and update.message.text) or ""
            check = CHECKS[state]
            context.user_data[state] = check(value) if check else value
            await context.bot.send_message(update.effective_chat.id, f"Étape {state + 1}")
            return state + 1 if state + 1 < len(CHECKS) else ConversationHandler.END

        return callback

    any_input = filters.TEXT | filters.CONTACT
    conversation = ConversationHandler(
        entry_points=[CommandHandler("start", start)],
        states={
            state: [CallbackQueryHandler(answer(state)), MessageHandler(any_input, answer(state))]
            for state in range(len(CHECKS))
        },
        fallbacks=[],
        name="signup",
        persistent=True,
        per_message=False,
    )
    application = (
        ApplicationBuilder()
        .token(token)
        .request(request)
        .get_updates_request(request)
        .persistence(PicklePersistence(persistence_path))
        .concurrent_updates(processor)
        .build()
    )
    application.add_handler(conversation)
    return application
