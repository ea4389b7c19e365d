"""A local Bot API server (aiohttp on 127.0.0.1) for tests that run the real bot over HTTP.

It answers what the bot uses, lets a test inject user updates and read the bot's replies, and
can apply Telegram-like flood limits by answering 429 with `retry_after`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.smtp_server import free_port

# Telegram lets bots download files up to 20 MB; getFile refuses bigger ones.
DOWNLOAD_MAX_BYTES = 20 * 1024 * 1024

BOT = {
    "id": 7000000001,
    "is_bot": True,
    "first_name": "Coffee",
    "username": "coffee_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
# Parameters PTB sends JSON-encoded; every other one is a plain string.
_JSON_PARAMETERS = {
    "chat_id", "message_id", "reply_markup", "offset", "limit", "timeout", "allowed_updates",
    "commands", "show_alert", "drop_pending_updates", "cache_time", "scope", "max_connections",
}  # fmt: skip


@dataclass
class Limits:
    """About Telegram's: 30 messages a second in all, one a second per chat with a small burst."""

    overall_per_second: float = 30.0
    per_chat_per_second: float = 1.0
    per_chat_burst: int = 3


@dataclass
class Sent:
    method: str
    params: dict[str, Any]
    at: float


@dataclass
class LocalBotApi:
    limits: Limits | None = None
    port: int = field(default_factory=free_port)
    sent: dict[int, list[Sent]] = field(default_factory=lambda: defaultdict(list))
    refused: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    # The bot processes polling this server, so that a test's end can stop them all.
    bots: list[Any] = field(default_factory=list)
    # What setWebhook registered (url, secret_token, max_connections, allowed_updates).
    webhook: dict[str, Any] = field(default_factory=dict)
    # Chats of people who blocked the bot: sending there gets Telegram's 403.
    blocked: set[int] = field(default_factory=set)
    # Files people sent, by file id, for getFile and the download beside the API.
    files: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._updates: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._overall: deque[float] = deque()
        self._per_chat: dict[int, deque[float]] = defaultdict(deque)
        self._runner: web.AppRunner | None = None
        # Set when a chat is sent something: its waiters look again then, not every 10 ms.
        self._chat_news: dict[int, asyncio.Event] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path}", self._download)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        async with self._arrived:
            self._arrived.notify_all()  # long polls return now rather than at their timeout
        if self._runner:
            await self._runner.cleanup()

    # What a test does.

    async def push(self, update: dict[str, Any]) -> None:
        """Deliver an update, as Telegram would to the next getUpdates."""
        async with self._arrived:
            self._updates.append(update)
            self._arrived.notify_all()

    def next_update_id(self) -> int:
        return next(self._update_ids)

    def texts_to(self, chat_id: int) -> list[str]:
        return [s.params["text"] for s in self.sent[chat_id] if "text" in s.params]

    async def wait_for(self, condition: Any, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError("the bot did not answer in time")
            await asyncio.sleep(0.01)

    async def wait_for_chat(self, chat_id: int, condition: Any, seconds: float = 30.0) -> None:
        """As `wait_for`, for a condition on what one chat was sent: looked at each time the
        chat is sent something (and twice a second), so that hundreds of people waiting cost
        nothing between their messages."""
        deadline = time.monotonic() + seconds
        news = self._chat_news.setdefault(chat_id, asyncio.Event())
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("the bot did not answer in time")
            news.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(news.wait(), min(remaining, 0.5))

    # What the bot sees.

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await self._params(request)
        self.calls[method] += 1
        if method == "getUpdates":
            if self.webhook:  # as Telegram: polling and a webhook exclude each other
                return self._error(409, "Conflict: can't use getUpdates while webhook is active")
            return self._ok(await self._get_updates(params))
        if method in ("setWebhook", "deleteWebhook", "getWebhookInfo"):
            return self._ok(self._webhook_method(method, params))
        if method == "getMe":
            return self._ok(BOT)
        if method in ("setMyCommands", "answerCallbackQuery"):
            return self._ok(True)
        if method == "getFile":
            content = self.files.get(str(params.get("file_id")))
            if content is None:
                return self._error(400, "Bad Request: invalid file_id")
            if len(content) > DOWNLOAD_MAX_BYTES:
                return self._error(400, "Bad Request: file is too big")
            file_id = str(params["file_id"])
            return self._ok({"file_id": file_id, "file_unique_id": f"U{file_id}",
                             "file_size": len(content), "file_path": file_id})  # fmt: skip
        chat_id = params.get("chat_id")
        if not isinstance(chat_id, int):
            return self._error(400, "Bad Request: chat not found")
        if chat_id in self.blocked:
            return self._error(403, "Forbidden: bot was blocked by the user")
        retry_after = self._throttled(chat_id)
        if retry_after:
            self.refused += 1
            body = {"ok": False, "error_code": 429, "parameters": {"retry_after": retry_after},
                    "description": f"Too Many Requests: retry after {retry_after}"}  # fmt: skip
            return web.json_response(body, status=429)
        self.sent[chat_id].append(Sent(method, params, time.monotonic()))
        if chat_id in self._chat_news:
            self._chat_news[chat_id].set()
        message: dict[str, Any] = {
            "message_id": params.get("message_id") or next(self._message_ids),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
            "from": BOT,
        }
        if "text" in params:
            message["text"] = params["text"]
        if method == "sendDocument":
            message["document"] = {"file_id": "f", "file_unique_id": "u"}
        if method == "sendPhoto":
            message["photo"] = [{"file_id": "p", "file_unique_id": "pu", "width": 1, "height": 1}]
        return self._ok(message)

    async def _download(self, request: web.Request) -> web.Response:
        """A file, as Telegram serves it at /file/bot<token>/<file_path>."""
        self.calls["download"] += 1
        content = self.files.get(request.match_info["path"])
        if content is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=content, content_type="application/octet-stream")

    async def _params(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return dict(await request.json())
        params: dict[str, Any] = {}
        for key, value in (await request.post()).items():
            if isinstance(value, web.FileField):
                params[key] = value.file.read()
            elif key in _JSON_PARAMETERS:
                params[key] = json.loads(value)
            else:
                params[key] = value
        return params

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset, timeout = int(params.get("offset") or 0), float(params.get("timeout") or 0)
        async with self._arrived:
            # An offset confirms every update before it: Telegram forgets them.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            if not self._updates and timeout:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), timeout)
            return list(self._updates[: int(params.get("limit") or 100)])

    def _webhook_method(self, method: str, params: dict[str, Any]) -> Any:
        if params.get("drop_pending_updates"):
            self._updates.clear()
        if method == "setWebhook":
            self.webhook = params
            return True
        if method == "deleteWebhook":
            self.webhook = {}
            return True
        info = {"url": self.webhook.get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self._updates)}  # fmt: skip
        if self.webhook:
            info["max_connections"] = self.webhook.get("max_connections", 40)
            info["allowed_updates"] = self.webhook.get("allowed_updates", [])
        return info

    def _throttled(self, chat_id: int) -> int:
        if self.limits is None:
            return 0
        now = time.monotonic()
        overall, chat = self._overall, self._per_chat[chat_id]
        while overall and overall[0] <= now - 1:
            overall.popleft()
        window = self.limits.per_chat_burst / self.limits.per_chat_per_second
        while chat and chat[0] <= now - window:
            chat.popleft()
        if (
            len(overall) >= self.limits.overall_per_second
            or len(chat) >= self.limits.per_chat_burst
        ):
            return 1
        overall.append(now)
        chat.append(now)
        return 0

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _error(code: int, description: str) -> web.Response:
        return web.json_response(
            {"ok": False, "error_code": code, "description": description}, status=code
        )
