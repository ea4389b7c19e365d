"""Benchmark: simulated users doing full signups through the real Application.

The fake Bot API answers every call after --latency seconds (20 ms by default, as Telegram's
API seen from a European server). For each variant it prints steps/s with every user going as
fast as replies come (closed loop), then update→reply latency percentiles with steps offered
at --rate per second, and the process's peak RSS. Variants run in separate processes.

    python -m bench.signup                 # both variants, default sizes
    python -m bench.signup --users 500 --rate 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from telegram import Update
from telegram.ext import Application, BaseUpdateProcessor

from bot.app import build_application
from bot.cli import new_event_loop
from bot.settings import Settings
from tests.telegram_fakes import ApiCall, FakeBotApi, Updates
from tests.test_telegram import signup_updates

REPLIES = ("sendMessage", "editMessageText", "sendDocument")


class Driver:
    """Plays users: sends a user's next update once the previous one is fully processed, and
    times each update until its first reply reaches the Bot API."""

    def __init__(self) -> None:
        self.application: Application | None = None  # type: ignore[type-arg]
        self.latencies: list[float] = []
        self._first_reply: dict[int, asyncio.Future[float]] = {}
        self._processed: dict[int, asyncio.Event] = {}

    def on_call(self, call: ApiCall) -> None:
        waiter = self._first_reply.pop(call.params.get("chat_id", 0), None)
        if call.method in REPLIES and waiter and not waiter.done():
            waiter.set_result(call.at)

    def on_processed(self, update: object) -> None:
        if isinstance(update, Update):
            self._processed.pop(update.update_id, asyncio.Event()).set()

    async def send(self, data: dict[str, Any], chat_id: int, record: bool) -> None:
        assert self.application
        replied = asyncio.get_running_loop().create_future()
        self._first_reply[chat_id] = replied
        processed = self._processed[data["update_id"]] = asyncio.Event()
        sent = time.monotonic()
        await self.application.update_queue.put(Update.de_json(data, self.application.bot))
        at = await asyncio.wait_for(replied, 60)
        await asyncio.wait_for(processed.wait(), 60)
        if record:
            self.latencies.append(at - sent)


class Pacer:
    """Hands out send slots at `rate` per second (0: no pacing)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1 / rate if rate else 0.0
        self._next = time.monotonic()

    async def wait(self) -> None:
        if not self._interval:
            return
        now = time.monotonic()
        slot, self._next = max(now, self._next), max(now, self._next) + self._interval
        if slot > now:
            await asyncio.sleep(slot - now)


async def play(driver: Driver, users: int, first_user: int, pacer: Pacer, record: bool) -> int:
    updates = Updates(start=first_user * 100)

    async def one(user_id: int) -> int:
        user = Updates.user(user_id)
        steps = signup_updates(updates, user)
        for data in steps:
            await pacer.wait()
            await driver.send(data, user_id, record)
        return len(steps)

    counts = await asyncio.gather(*(one(first_user + n) for n in range(users)))
    return sum(counts)


class TrackingProcessor(BaseUpdateProcessor):
    """Wraps a processor to tell the driver when each update is done."""

    def __init__(self, inner: BaseUpdateProcessor, done: Callable[[object], None]) -> None:
        super().__init__(inner.max_concurrent_updates)
        self._inner, self._done = inner, done

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        try:
            await self._inner.do_process_update(update, coroutine)
        finally:
            self._done(update)

    async def initialize(self) -> None:
        await self._inner.initialize()

    async def shutdown(self) -> None:
        await self._inner.shutdown()


async def run_variant(
    variant: str, users: int, rate: float, latency: float, workdir: Path
) -> dict[str, Any]:
    driver = Driver()
    api = FakeBotApi(latency, listener=driver.on_call)
    if variant == "coffeebot":
        settings = Settings(
            telegram_bot_token="123456:BENCH",
            database_url=f"sqlite:///{workdir / 'bench.db'}",
            # The fake API has no flood control; Telegram's own would cap replies at 30/s.
            telegram_max_messages_per_second=1_000_000,
            flood_max_messages=1_000,
        )
        application = build_application(settings, request=api)
        # Wrap the composition root's processor, as the baseline's, to see updates finish.
        processor = TrackingProcessor(application.update_processor, driver.on_processed)
        application._update_processor = processor
    else:
        from telegram.ext import SimpleUpdateProcessor

        from bench.conversationhandler_bot import build_conversationhandler_bot

        processor = TrackingProcessor(SimpleUpdateProcessor(1), driver.on_processed)
        application = build_conversationhandler_bot(
            "123456:BENCH", api, workdir / "bench.pickle", processor
        )
    driver.application = application
    await application.initialize()
    if application.post_init:
        await application.post_init(application)
    await application.start()
    try:
        started = time.perf_counter()
        steps = await play(driver, users, 1, Pacer(0), record=False)
        elapsed = time.perf_counter() - started
        paced = await play(driver, users, 1 + users, Pacer(rate), record=True) if rate else 0
    finally:
        await application.stop()
        await application.shutdown()
        if application.post_shutdown:
            await application.post_shutdown(application)
    latencies = sorted(driver.latencies)

    def percentile(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0
        )

    return {
        "variant": variant,
        "users": users,
        "steps": steps,
        "steps_per_s": steps / elapsed,
        "offered_rate": rate,
        "paced_steps": paced,
        "p50_ms": statistics.median(latencies) * 1000 if latencies else 0.0,
        "p99_ms": percentile(0.99),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--variant", choices=["coffeebot", "conversationhandler", "both"], default="both"
    )
    parser.add_argument("--users", type=int, default=300, help="simulated users for coffeebot")
    parser.add_argument(
        "--baseline-users", type=int, default=40, help="users for the ConversationHandler bot"
    )
    parser.add_argument(
        "--rate", type=float, default=300, help="steps/s offered for the latency run (0: skip)"
    )
    parser.add_argument(
        "--baseline-rate", type=float, default=20, help="steps/s offered to the baseline"
    )
    parser.add_argument("--latency", type=float, default=0.020, help="Bot API latency in seconds")
    parser.add_argument(
        "--json", action="store_true", help="print one JSON result (used between processes)"
    )
    arguments = parser.parse_args()

    if arguments.variant != "both":
        users = arguments.users if arguments.variant == "coffeebot" else arguments.baseline_users
        rate = arguments.rate if arguments.variant == "coffeebot" else arguments.baseline_rate
        loop = new_event_loop()
        try:
            with tempfile.TemporaryDirectory() as workdir:
                run = run_variant(arguments.variant, users, rate, arguments.latency, Path(workdir))
                result = loop.run_until_complete(run)
        finally:
            loop.close()
        result["event_loop"] = type(loop).__module__.split(".")[0]
        print(json.dumps(result) if arguments.json else result)
        return

    results = []
    for variant in ("coffeebot", "conversationhandler"):
        command = [sys.executable, "-m", "bench.signup", "--variant", variant, "--json"]
        command += [f"--users={arguments.users}", f"--baseline-users={arguments.baseline_users}"]
        command += [f"--rate={arguments.rate}", f"--baseline-rate={arguments.baseline_rate}"]
        command += [f"--latency={arguments.latency}"]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    print(
        f"Bot API latency {arguments.latency * 1000:.0f} ms; every step committed to SQLite (WAL);"
        f" event loop: {results[0]['event_loop']}."
    )
    columns = ("users", "steps", "steps/s", "offered/s", "p50 ms", "p99 ms", "RSS MB")
    print(f"{'variant':<22}" + "".join(f"{column:>10}" for column in columns))
    for r in results:
        print(
            f"{r['variant']:<22}{r['users']:>10}{r['steps']:>10}{r['steps_per_s']:>10.0f}"
            f"{r['offered_rate']:>10.0f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}{r['peak_rss_mb']:>10.0f}"
        )
    ratio = results[0]["steps_per_s"] / results[1]["steps_per_s"]
    print(f"ratio coffeebot / ConversationHandler: {ratio:.1f}x")


if __name__ == "__main__":
    main()
