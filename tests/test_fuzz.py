"""Hostile updates at every step, through the real Application: nothing escapes a handler,
a refused input changes nothing stored, and the bot keeps answering."""

from __future__ import annotations

import logging
import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from telegram import Update

from bot.settings import Settings
from bot.texts import load_catalogue
from tests.telegram_fakes import FakeBotApi, Updates, running_bot
from tests.test_telegram import signup_updates

USER = 4242
_texts = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=60),
    st.text(
        alphabet=st.characters(categories=["Cc", "Cf", "Zl", "Zp", "Mn", "So", "Co"]), max_size=40
    ),
    st.builds(lambda c, n: c * n, st.characters(), st.integers(1000, 20_000)),
    st.sampled_from(
        ["/start", "/start c_x", "/start r_" + "A" * 62, "/supprimer", "/modifier", "/langue"]
    ),
)
_wrong = st.one_of(
    st.integers(),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _message(user: dict[str, Any], **content: Any) -> dict[str, Any]:
    chat = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
    return {"message_id": 7, "date": int(time.time()), "chat": chat, "from": user, **content}


@st.composite
def hostile_update(draw: st.DrawFn) -> dict[str, Any]:
    user = Updates.user(USER)
    kind = draw(
        st.sampled_from(
            ["text", "press", "contact", "wrong_text", "unknown", "edited", "sticker_junk"]
        )
    )
    if kind == "text":
        text = draw(_texts)
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            content["entities"] = [
                {"type": "bot_command", "offset": 0, "length": len(text.split(" ")[0])}
            ]
        return {"message": _message(user, **content)}
    if kind == "press":
        data = draw(
            st.one_of(
                st.text(max_size=64),
                st.sampled_from(
                    [
                        "summary.confirm",
                        "erase.keep",
                        "lang.xx",
                        "win.accept",
                        "admin.draw.confirm",
                        "edit.phone",
                    ]
                ),
            )
        )
        query = {
            "id": "q",
            "from": user,
            "chat_instance": "c",
            "data": data,
            "message": _message(user, text="…"),
        }
        return {"callback_query": query}
    if kind == "contact":
        contact = {
            "phone_number": draw(st.text(max_size=30)),
            "first_name": "X",
            "user_id": draw(st.sampled_from([USER, 1, None])),
        }
        return {
            "message": _message(user, contact={k: v for k, v in contact.items() if v is not None})
        }
    if kind == "wrong_text":
        return {"message": _message(user, text=draw(_wrong))}
    if kind == "unknown":
        return {
            draw(st.sampled_from(["future_kind", "something_new", "x"])): {"anything": draw(_wrong)}
        }
    if kind == "edited":
        return {"edited_message": _message(user, text=draw(_texts), edit_date=int(time.time()))}
    return {
        "message": _message(
            user,
            sticker=draw(
                st.dictionaries(st.sampled_from(["file_id", "width", "type"]), _wrong, max_size=3)
            ),
        )
    }


# closing(): a sqlite3 connection used as a context manager commits but is not closed.
def stored_row(database: Path) -> tuple[Any, ...] | None:
    with closing(sqlite3.connect(database)) as db:
        row = db.execute("SELECT * FROM participants WHERE user_id = ?", (USER,)).fetchone()
        friends = db.execute("SELECT * FROM friends WHERE user_id = ?", (USER,)).fetchall()
    return (row, tuple(friends)) if row else None


def refusal_starts(settings: Settings) -> tuple[str, ...]:
    """How every refusal or reminder starts, in French, up to its first placeholder."""
    texts = load_catalogue(settings).texts["fr"]
    return tuple(
        re.split(r"\{", text)[0]
        for key, text in texts.items()
        if key.startswith(("refusal.", "remind.", "error."))
    )


class _Escaped(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(prefix=st.integers(0, 14), updates=st.lists(hostile_update(), min_size=1, max_size=8))
async def test_hostile_updates_at_any_step(
    settings: Settings, tmp_path: Path, prefix: int, updates: list[dict[str, Any]]
) -> None:
    database = tmp_path / f"fuzz-{time.monotonic_ns()}.db"
    settings = settings.replace(database_url=f"sqlite:///{database}")
    escaped = _Escaped()
    logging.getLogger("bot.telegram.application").addHandler(escaped)
    starts = refusal_starts(settings)
    api, builder = FakeBotApi(), Updates()
    user = Updates.user(USER)
    try:
        async with running_bot(settings, api) as bot:
            await bot.feed(*signup_updates(builder, user)[:prefix])
            for number, update in enumerate(updates):
                data = {"update_id": 10_000 + number, **update}
                try:
                    Update.de_json(data, bot.application.bot)
                except (TypeError, KeyError, ValueError, AttributeError):
                    continue  # python-telegram-bot refuses it before any handler exists
                before, sent = stored_row(database), len(api.texts_to(USER))
                await bot.feed(data)
                replies = api.texts_to(USER)[sent:]
                if replies and replies[0].startswith(starts):
                    assert stored_row(database) == before, replies[0]
            sent = len(api.texts_to(USER))
            await bot.feed(builder.text(user, "/statut"))
            assert len(api.texts_to(USER)) == sent + 1
    finally:
        logging.getLogger("bot.telegram.application").removeHandler(escaped)
    assert escaped.records == []
