"""What the logs say about a failure: ids and keys, the error's class and where it was raised,
never its message. Messages quote what they failed on: an address refused by a mail server, a
value a constraint rejected, a person's typed text."""

from __future__ import annotations

import logging
import traceback

# Frames shown, innermost last: enough to find the line, not a traceback's worth.
_FRAMES = 3


def failure(error: BaseException) -> str:
    """`KeyError at bot/service.py:193 in _step ← …`: the class and the innermost frames."""
    frames = traceback.extract_tb(error.__traceback__)[-_FRAMES:]
    where = " ← ".join(
        f"{_short(frame.filename)}:{frame.lineno} in {frame.name}" for frame in reversed(frames)
    )
    name = type(error).__name__
    return f"{name} at {where}" if where else name


def _short(filename: str) -> str:
    for root in ("/bot/", "/conversations/", "/storage/", "/site-packages/"):
        if root in filename:
            return root.strip("/") + "/" + filename.rsplit(root, 1)[1]
    return filename


# Libraries whose DEBUG records carry payloads: python-telegram-bot and the HTTP clients log
# every Bot API call with the message's text, the database drivers every statement with its
# parameters, aiosmtplib the envelope's addresses.
PAYLOAD_LOGGERS = ("telegram", "httpx", "httpcore", "aiohttp", "aiosqlite", "asyncpg", "aiosmtplib")


def quiet_payload_loggers() -> None:
    """However verbose the bot's own logging, these libraries say no more than INFO."""
    for name in PAYLOAD_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.INFO:  # NOTSET too: it would follow the root down
            logger.setLevel(logging.INFO)
