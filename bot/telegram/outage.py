"""When the Telegram Bot API stops answering: one warning, then one line when it is back.

python-telegram-bot polls again by itself after a failed getUpdates, and reports each failure;
this turns those reports into one warning per outage and watches (getMe, with a doubling wait)
for the moment the API answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from telegram import Bot
from telegram.error import NetworkError

log = logging.getLogger(__name__)

# python-telegram-bot names its polling task so; during an outage it sleeps up to 30 s between
# attempts, and a stop would wait for that sleep to end.
POLLING_TASK = "Updater:start_polling:polling_task"


def describe(error: BaseException, secret: str | None) -> str:
    """The error's kind and message, with the token (part of every Bot API URL) blanked out."""
    text = f"{type(error).__name__}: {error}"
    return text.replace(secret, "<token>") if secret else text


class ApiOutage:
    def __init__(self, retry_max_seconds: float) -> None:
        self._retry_max = retry_max_seconds
        self._watch: asyncio.Task[None] | None = None

    @property
    def ongoing(self) -> bool:
        return self._watch is not None

    def failed(self, bot: Bot, error: NetworkError) -> None:
        """A poll failed: say so once, and watch for the API's return."""
        if self._watch is not None:
            return
        log.warning(
            "the Telegram Bot API does not answer (%s); polling again until it does",
            describe(error, bot.token),
        )
        self._watch = asyncio.create_task(self._until_back(bot), name="Bot API outage")

    async def _until_back(self, bot: Bot) -> None:
        wait = 1.0
        while True:
            await asyncio.sleep(wait)
            try:
                await bot.get_me()
            except NetworkError:
                wait = min(2 * wait, self._retry_max)
            else:
                break
        log.warning("the Telegram Bot API answers again")
        self._watch = None

    def cut_short(self) -> None:
        """At a stop signal during an outage: end the polling task's sleep between attempts."""
        if self._watch is None:
            return
        for task in asyncio.all_tasks():
            if task.get_name() == POLLING_TASK:
                task.cancel()

    async def stop(self) -> None:
        if self._watch is None:
            return
        watch, self._watch = self._watch, None
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
