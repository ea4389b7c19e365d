"""A test stand-in for Telegram's side of a webhook: it PUSHES updates to the bot over HTTP.

As Telegram does (Bot API docs, tdlib/telegram-bot-api): updates wait in a queue per chat, one
in flight at a time, the next only after a 2xx for the previous; button presses wait in a queue
per user, apart from the messages; a non-2xx answer or a timeout is retried with a growing
delay; an update is dropped once its lifetime is over (a day for messages, about 150 s for
presses). Retry delays are scaled down so that a test lasts seconds; `PushTimes` says how.
With several bot URLs, requests are spread over them in turn, standing in for the balancer;
with `failover`, a request refused by one (nothing listening: a replica down) is tried on the
next at once, as the balancer does (Caddy's lb_try_duration in deploy/Caddyfile), and counted
in `failovers` rather than as Telegram's retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


@dataclass(frozen=True)
class PushTimes:
    """Telegram's retry delays divided by ten, so that a test does not wait out its
    minute-long delays; its lifetimes as they are, since a bot restarts here as slowly as in
    production (a few seconds on a loaded machine: a press living 15 s instead of 150 s was
    dropped while the bot was still starting, a loss Telegram would not cause)."""

    first_retry: float = 0.1
    longest_retry: float = 1.0
    request_timeout: float = 6.0
    message_lifetime: float = 24 * 3600
    press_lifetime: float = 150


@dataclass
class Queued:
    update: dict[str, Any]
    expires_at: float
    attempts: int = 0


@dataclass
class WebhookPusher:
    urls: list[str]
    secret: str
    max_connections: int = 40
    times: PushTimes = field(default_factory=PushTimes)
    failover: bool = False
    failovers: int = 0
    # What happened: answers by status ("timeout", "refused" when nothing listened, "cut" when
    # the connection broke during the request).
    answers: Counter[str] = field(default_factory=Counter)
    delivered: list[int] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queues: dict[tuple[str, int], deque[Queued]] = {}
        self._workers: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._connections = asyncio.Semaphore(self.max_connections)
        self._turn = itertools.cycle(range(len(self.urls)))
        self._session: aiohttp.ClientSession | None = None

    @property
    def retries(self) -> int:
        return sum(n for status, n in self.answers.items() if not status.startswith("2"))

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.times.request_timeout)
        )

    async def stop(self) -> None:
        for worker in self._workers.values():
            worker.cancel()
        for worker in list(self._workers.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._session is not None:
            await self._session.close()

    def push(self, update: dict[str, Any]) -> None:
        """Queue an update as Telegram would on receiving it from a person."""
        press = update.get("callback_query")
        if press is not None:
            key, lifetime = ("press", press["from"]["id"]), self.times.press_lifetime
        else:
            key, lifetime = ("chat", update["message"]["chat"]["id"]), self.times.message_lifetime
        queue = self._queues.setdefault(key, deque())
        queue.append(Queued(update, time.monotonic() + lifetime))
        if key not in self._workers or self._workers[key].done():
            self._workers[key] = asyncio.create_task(self._drain(queue))

    def pending(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    async def _drain(self, queue: deque[Queued]) -> None:
        while queue:
            queued = queue[0]
            if time.monotonic() > queued.expires_at:
                self.dropped.append(queued.update["update_id"])
            elif not await self._post(queued):
                delay = self.times.first_retry * 2 ** (queued.attempts - 1)
                await asyncio.sleep(min(delay, self.times.longest_retry))
                continue
            queue.popleft()

    async def _post(self, queued: Queued) -> bool:
        assert self._session is not None
        queued.attempts += 1
        first = next(self._turn)
        async with self._connections:
            for turn in range(len(self.urls) if self.failover else 1):
                self.failovers += turn > 0
                status = await self._request(self.urls[(first + turn) % len(self.urls)], queued)
                if status != "refused":
                    break
        self.answers[status] += 1
        if status.startswith("2"):
            self.delivered.append(queued.update["update_id"])
            return True
        return False

    async def _request(self, url: str, queued: Queued) -> str:
        assert self._session is not None
        try:
            async with self._session.post(
                url, json=queued.update, headers={SECRET_HEADER: self.secret}
            ) as response:
                await response.read()
                return str(response.status)
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientConnectorError:
            return "refused"  # nothing listening: the request never reached a bot
        except aiohttp.ClientError:
            return "cut"  # the bot went away during the request
