"""A Bot API in a process of its own, for `bench.signup --api http`: aiohttp on 127.0.0.1, a
port chosen by the OS, every call answered like Telegram after a fixed latency.

    python -m bench.bot_api 0.020     # prints the port, then serves until stdin closes
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import sys
import time
from typing import Any

from aiohttp import web

from bot.cli import new_event_loop
from tests.bot_api_server import BOT

_MESSAGES = ("sendMessage", "editMessageText", "sendDocument", "sendPhoto")


def serve(latency: float) -> web.Application:
    message_ids = itertools.count(10_000)

    async def handle(request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.content_type == "application/json":
            params: dict[str, Any] = await request.json()
        else:
            params = dict(await request.post())
        await asyncio.sleep(latency)
        result: Any = True
        if method == "getMe":
            result = BOT
        elif method == "getUpdates":
            result = []
        elif method in _MESSAGES:
            chat_id = int(params["chat_id"])
            result = {
                "message_id": int(params.get("message_id") or next(message_ids)),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "from": BOT,
                "text": params.get("text", ""),
            }
        return web.json_response({"ok": True, "result": result})

    app = web.Application()
    app.router.add_route("*", "/bot{token}/{method}", handle)
    return app


async def main(latency: float) -> None:
    runner = web.AppRunner(serve(latency), access_log=None)
    await runner.setup()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    await web.SockSite(runner, listener, backlog=1024).start()
    print(listener.getsockname()[1], flush=True)
    # The benchmark closes our stdin when it is done.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    loop = new_event_loop()
    try:
        loop.run_until_complete(main(float(sys.argv[1])))
    finally:
        loop.close()
