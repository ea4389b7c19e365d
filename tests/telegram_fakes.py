"""An in-process Bot API for tests and benchmarks: a `BaseRequest` that answers like Telegram
and records every call, update builders, and a harness running the real `Application`."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from telegram import Update
from telegram.ext import Application
from telegram.request import BaseRequest, RequestData

from bot.settings import Settings
from bot.telegram.application import build_application
from tests.bot_api_server import DOWNLOAD_MAX_BYTES

BOT_ID = 7000000001
BOT_USERNAME = "coffee_test_bot"


@dataclass
class ApiCall:
    method: str
    params: dict[str, Any]
    files: dict[str, Any] = field(default_factory=dict)
    at: float = 0.0


class FakeBotApi(BaseRequest):
    """Answers the Bot API methods the bot uses, after `latency` seconds, and records the calls
    (unless `record` is false: a benchmark's API keeps nothing in the bot's process, as
    Telegram's own does not)."""

    def __init__(
        self,
        latency: float = 0.0,
        listener: Callable[[ApiCall], None] | None = None,
        record: bool = True,
    ) -> None:
        self.latency = latency
        self.calls: list[ApiCall] = []
        self._record = record
        # Chats of people who blocked the bot: sending there gets Telegram's 403.
        self.blocked: set[int] = set()
        self._listener = listener
        self._message_ids = itertools.count(10_000)
        # Files people sent, by file id, as Telegram keeps them for the bot to download.
        self.files: dict[str, bytes] = {}
        self._file_ids = itertools.count(1)

    def add_file(self, content: bytes) -> tuple[str, str]:
        """Keep a file as if a person had sent it: its (file_id, file_unique_id)."""
        number = next(self._file_ids)
        file_id = f"FILE{number:04d}"
        self.files[file_id] = content
        return file_id, f"U{number:04d}"

    @property
    def read_timeout(self) -> float | None:
        return None

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: Any = None,
        write_timeout: Any = None,
        connect_timeout: Any = None,
        pool_timeout: Any = None,
    ) -> tuple[int, bytes]:
        endpoint = url.rsplit("/", 1)[-1]
        params = dict(request_data.parameters) if request_data else {}
        files = (
            dict(request_data.multipart_data)
            if request_data and request_data.contains_files
            else {}
        )
        if "/file/bot" in url:
            # A download: https://api.telegram.org/file/bot<token>/<file_path>
            self.calls.append(ApiCall("download", {"file_path": endpoint}, {}, time.monotonic()))
            content = self.files.get(endpoint)
            if content is None:
                return 404, b"Not Found"
            return 200, content
        if endpoint == "getUpdates":
            await asyncio.sleep(0.05)
            return 200, json.dumps({"ok": True, "result": []}).encode()
        call = ApiCall(endpoint, params, files, time.monotonic())
        if self._record:
            self.calls.append(call)
        if self._listener:
            self._listener(call)
        if self.latency:
            await asyncio.sleep(self.latency)
        if endpoint.startswith("send") and params.get("chat_id") in self.blocked:
            body = {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked"}
            return 403, json.dumps(body).encode()
        result = self._answer(endpoint, params, files)
        if result is None:
            body = {"ok": False, "error_code": 400, "description": f"Bad Request: {endpoint}"}
            return 400, json.dumps(body).encode()
        return 200, json.dumps({"ok": True, "result": result}).encode()

    def _answer(self, endpoint: str, params: dict[str, Any], files: dict[str, Any]) -> Any:
        if endpoint == "getMe":
            return {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": "Coffee",
                "username": BOT_USERNAME,
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        if endpoint in ("setMyCommands", "answerCallbackQuery", "deleteWebhook"):
            return True
        if endpoint == "getFile":
            file_id = params.get("file_id", "")
            content = self.files.get(file_id)
            if content is None or len(content) > DOWNLOAD_MAX_BYTES:
                return None  # Telegram: "invalid file_id" or "file is too big"
            return {
                "file_id": file_id,
                "file_unique_id": f"U{file_id}",
                "file_size": len(content),
                "file_path": file_id,
            }
        if endpoint in (
            "sendMessage", "editMessageText", "editMessageReplyMarkup", "sendDocument", "sendPhoto"
        ):  # fmt: skip
            message_id = params.get("message_id") or next(self._message_ids)
            message: dict[str, Any] = {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": {"id": params["chat_id"], "type": "private"},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "Coffee"},
            }
            if "text" in params:
                message["text"] = params["text"]
            if endpoint == "sendPhoto":
                message["photo"] = [
                    {"file_id": "p", "file_unique_id": "pu", "width": 1, "height": 1}
                ]
            if endpoint == "sendDocument":
                name = next(iter(files.values()))[0] if files else "document"
                message["document"] = {"file_id": "f", "file_unique_id": "u", "file_name": name}
            return message
        return None

    # Views on what the bot said, for assertions.

    def to_chat(self, chat_id: int) -> list[ApiCall]:
        return [call for call in self.calls if call.params.get("chat_id") == chat_id]

    def texts_to(self, chat_id: int) -> list[str]:
        return [
            call.params["text"]
            for call in self.to_chat(chat_id)
            if call.method in ("sendMessage", "editMessageText")
        ]

    def last_buttons(self, chat_id: int) -> dict[str, str]:
        """Label → callback data of the last inline keyboard sent to the chat."""
        for call in reversed(self.to_chat(chat_id)):
            markup = call.params.get("reply_markup")
            if isinstance(markup, dict) and "inline_keyboard" in markup:
                return {
                    b["text"]: b["callback_data"] for row in markup["inline_keyboard"] for b in row
                }
        return {}

    def named_documents_to(self, chat_id: int) -> dict[str, bytes]:
        """Uploaded documents (not those sent again by file id)."""
        return {
            next(iter(call.files.values()))[0]: next(iter(call.files.values()))[1]
            for call in self.to_chat(chat_id)
            if call.method == "sendDocument" and call.files
        }

    def documents_to(self, chat_id: int) -> list[bytes]:
        return [
            next(iter(call.files.values()))[1]
            for call in self.to_chat(chat_id)
            if call.method == "sendDocument" and call.files
        ]

    def downloads(self) -> list[str]:
        return [call.params["file_path"] for call in self.calls if call.method == "download"]


class Updates:
    """Builds Bot API updates as JSON, with increasing update and message ids."""

    def __init__(self, start: int = 1) -> None:
        self._update_ids = itertools.count(start)
        self._message_ids = itertools.count(start)

    @staticmethod
    def user(
        user_id: int, first_name: str = "Zoé", last_name: str | None = None, language: str = "fr"
    ) -> dict[str, Any]:
        user: dict[str, Any] = {
            "id": user_id,
            "is_bot": False,
            "first_name": first_name,
            "language_code": language,
        }
        if last_name:
            user["last_name"] = last_name
        return user

    def _message(
        self, user: dict[str, Any], chat: dict[str, Any] | None = None, **content: Any
    ) -> dict[str, Any]:
        return {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat or {"id": user["id"], "type": "private", "first_name": user["first_name"]},
            "from": user,
            **content,
        }

    def text(self, user: dict[str, Any], text: str) -> dict[str, Any]:
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            command = text.split(" ", 1)[0]
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        return {"update_id": next(self._update_ids), "message": self._message(user, **content)}

    def contact(self, user: dict[str, Any], phone: str, owner_id: int | None) -> dict[str, Any]:
        contact: dict[str, Any] = {"phone_number": phone, "first_name": user["first_name"]}
        if owner_id is not None:
            contact["user_id"] = owner_id
        return {
            "update_id": next(self._update_ids),
            "message": self._message(user, contact=contact),
        }

    def press(self, user: dict[str, Any], data: str, message_id: int = 1) -> dict[str, Any]:
        chat = {"id": user["id"], "type": "private", "first_name": user["first_name"]}
        message = {"message_id": message_id, "date": int(time.time()), "chat": chat, "text": "…"}
        query = {
            "id": str(next(self._message_ids)),
            "from": user,
            "chat_instance": "ci",
            "data": data,
            "message": message,
        }
        return {"update_id": next(self._update_ids), "callback_query": query}

    def sticker(self, user: dict[str, Any]) -> dict[str, Any]:
        sticker = {
            "file_id": "s", "file_unique_id": "su", "width": 512, "height": 512,
            "is_animated": False, "is_video": False, "type": "regular",
        }  # fmt: skip
        return {
            "update_id": next(self._update_ids),
            "message": self._message(user, sticker=sticker),
        }

    def photo(
        self, user: dict[str, Any], file_id: str, unique_id: str, size: int | None = None
    ) -> dict[str, Any]:
        """A photo as Telegram sends it: several sizes, the largest (the one sent) last."""
        thumbnail = {"file_id": f"{file_id}t", "file_unique_id": f"{unique_id}t", "width": 90,
                     "height": 90, "file_size": 1000}  # fmt: skip
        largest: dict[str, Any] = {
            "file_id": file_id, "file_unique_id": unique_id, "width": 1280, "height": 960,
        }  # fmt: skip
        if size is not None:
            largest["file_size"] = size
        return {
            "update_id": next(self._update_ids),
            "message": self._message(user, photo=[thumbnail, largest]),
        }

    def document(
        self,
        user: dict[str, Any],
        file_id: str,
        unique_id: str,
        file_name: str,
        mime_type: str,
        size: int | None = None,
    ) -> dict[str, Any]:
        document: dict[str, Any] = {
            "file_id": file_id, "file_unique_id": unique_id, "file_name": file_name,
            "mime_type": mime_type,
        }  # fmt: skip
        if size is not None:
            document["file_size"] = size
        return {
            "update_id": next(self._update_ids),
            "message": self._message(user, document=document),
        }

    def location(self, user: dict[str, Any]) -> dict[str, Any]:
        location = {"latitude": 48.85, "longitude": 2.35}
        return {
            "update_id": next(self._update_ids),
            "message": self._message(user, location=location),
        }

    def edited(self, user: dict[str, Any], text: str) -> dict[str, Any]:
        message = self._message(user, text=text, edit_date=int(time.time()))
        return {"update_id": next(self._update_ids), "edited_message": message}

    def in_group(self, user: dict[str, Any], text: str, group_id: int) -> dict[str, Any]:
        chat = {"id": group_id, "type": "supergroup", "title": "Militants"}
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            content["entities"] = [
                {"type": "bot_command", "offset": 0, "length": len(text.split(" ", 1)[0])}
            ]
        return {
            "update_id": next(self._update_ids),
            "message": self._message(user, chat=chat, **content),
        }


@dataclass
class BotHarness:
    application: Application  # type: ignore[type-arg]
    api: FakeBotApi

    async def feed(self, *updates: dict[str, Any]) -> None:
        """Deliver updates as the poller would, and wait until all are processed."""
        for data in updates:
            await self.application.update_queue.put(Update.de_json(data, self.application.bot))
        await self.application.update_queue.join()


@asynccontextmanager
async def running_bot(
    settings: Settings, api: FakeBotApi, clock: Callable[[], datetime] | None = None
) -> AsyncIterator[BotHarness]:
    """Run the application from the composition root, in the order `run_polling` uses."""
    application = build_application(
        settings, request=api, clock=clock or (lambda: datetime.now(UTC))
    )
    await application.initialize()
    try:
        assert application.post_init is not None
        await application.post_init(application)
        await application.start()
        try:
            yield BotHarness(application, api)
        finally:
            await application.stop()
    finally:
        await application.shutdown()
        assert application.post_shutdown is not None
        await application.post_shutdown(application)
