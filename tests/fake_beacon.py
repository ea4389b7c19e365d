"""A drand HTTP endpoint on 127.0.0.1 for the tests: /info and /public/{round}.

A round is published once the test's clock reaches its time, and its signature is drawn only
then, so no value exists before: like the real chain, as far as the bot can tell.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web


@dataclass
class FakeDrand:
    clock: Callable[[], datetime]
    genesis_time: int
    period: int = 1
    # Set to make every request fail, as an unreachable endpoint would.
    down: bool = False
    signatures: dict[int, bytes] = field(default_factory=dict)
    requests: int = 0
    url: str = ""

    def round_time(self, number: int) -> float:
        return self.genesis_time + (number - 1) * self.period

    async def info(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.down:
            return web.Response(status=503)
        return web.json_response(
            {
                "public_key": "00" * 48,
                "period": self.period,
                "genesis_time": self.genesis_time,
                "hash": "fa" * 32,
            }
        )

    async def public(self, request: web.Request) -> web.Response:
        self.requests += 1
        number = int(request.match_info["round"])
        if self.down:
            return web.Response(status=503)
        if self.round_time(number) > self.clock().timestamp():
            return web.Response(status=404)
        signature = self.signatures.setdefault(number, os.urandom(48))
        return web.json_response(
            {
                "round": number,
                "randomness": hashlib.sha256(signature).hexdigest(),
                "signature": signature.hex(),
            }
        )


@asynccontextmanager
async def running_drand(clock: Callable[[], datetime], period: int = 1) -> AsyncIterator[FakeDrand]:
    # Rounds one second off the clock's whole minutes: a freeze at NOW waits for the next one.
    beacon = FakeDrand(clock, int(clock().timestamp()) - 1000 * period + 1, period)
    app = web.Application()
    app.router.add_get("/info", beacon.info)
    app.router.add_get("/public/{round}", beacon.public)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    beacon.url = f"http://127.0.0.1:{port}"
    try:
        yield beacon
    finally:
        await runner.cleanup()
