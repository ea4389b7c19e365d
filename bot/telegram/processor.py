"""Processes different users' updates concurrently and each user's updates one at a time, in
the order they arrived, muting a user who floods the bot."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from enum import Enum
from typing import Any

from telegram import Update
from telegram.ext import BaseUpdateProcessor


class Verdict(Enum):
    ADMIT = "admit"
    WARN = "warn"
    DROP = "drop"


class FloodGuard:
    """Past `max_messages` in `window` seconds, warn once and drop for `mute` seconds."""

    _SWEEP_EVERY = 1000

    def __init__(self, max_messages: int, window: float, mute: float) -> None:
        self._max_messages = max_messages
        self._window = window
        self._mute = mute
        self._recent: dict[int, deque[float]] = {}
        self._muted_until: dict[int, float] = {}
        self._calls = 0

    def admit(self, user_id: int, now: float) -> Verdict:
        self._calls += 1
        if self._calls % self._SWEEP_EVERY == 0:
            self._sweep(now)
        until = self._muted_until.get(user_id)
        if until is not None:
            if now < until:
                return Verdict.DROP
            del self._muted_until[user_id]
        recent = self._recent.setdefault(user_id, deque())
        while recent and recent[0] <= now - self._window:
            recent.popleft()
        if len(recent) >= self._max_messages:
            self._muted_until[user_id] = now + self._mute
            recent.clear()
            return Verdict.WARN
        recent.append(now)
        return Verdict.ADMIT

    def _sweep(self, now: float) -> None:
        """Forget users who have been quiet for a window, so memory follows active users."""
        for user_id in [
            u for u, times in self._recent.items() if not times or times[-1] <= now - self._window
        ]:
            del self._recent[user_id]
        for user_id in [u for u, until in self._muted_until.items() if until <= now]:
            del self._muted_until[user_id]


class UserLocks:
    """One lock per user, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[int, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, user_id: int) -> AsyncIterator[None]:
        lock, holders = self._locks.get(user_id, (asyncio.Lock(), 0))
        self._locks[user_id] = (lock, holders + 1)
        try:
            async with lock:
                yield
        finally:
            lock, holders = self._locks[user_id]
            if holders == 1:
                del self._locks[user_id]
            else:
                self._locks[user_id] = (lock, holders - 1)

    def __len__(self) -> int:
        return len(self._locks)


class PerUserProcessor(BaseUpdateProcessor):
    def __init__(
        self,
        max_concurrent_updates: int,
        flood: FloodGuard,
        on_flood: Callable[[Update], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(max_concurrent_updates)
        self.locks = UserLocks()
        self._flood = flood
        self._on_flood = on_flood
        self._clock = clock

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        if not isinstance(update, Update) or update.effective_user is None:
            await coroutine
            return
        user = update.effective_user
        # Judged on arrival, and the lock asked for before any await, so that a user's
        # updates queue up in the order they came.
        verdict = self._flood.admit(user.id, self._clock())
        if verdict is Verdict.DROP:
            _close(coroutine)
            return
        async with self.locks.hold(user.id):
            if verdict is Verdict.ADMIT:
                await coroutine
            else:
                _close(coroutine)
                await self._on_flood(update)

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


def _close(coroutine: Awaitable[Any]) -> None:
    if asyncio.iscoroutine(coroutine):
        coroutine.close()
