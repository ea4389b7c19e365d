"""Benchmark: simulated users doing full signups through the real Application, each with its own
phone and addresses; the run fails unless every signup completes.

Two Bot APIs, each answering every call after --latency seconds (20 ms, as Telegram's seen from
a European server): `inproc`, a fake in the bot's process, and `http`, a server in a process of
its own (bench.bot_api) reached over loopback HTTP with the bot's own HTTP client, so that the
client's cost is counted. Updates are handed to the application's queue, as the poller would.

For each: steps/s with every user going as fast as replies come (closed loop), the process's
CPU per step, then update→first-reply latency with steps offered at each --rates, and the peak
RSS; then the usual ConversationHandler bot (bench.conversationhandler_bot) for comparison.
Each measurement runs in a fresh process, --runs times; the table gives medians.

    python -m bench.signup                  # everything, medians of 3 (a few minutes)
    python -m bench.signup --runs 1 --users 100
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telegram import Update
from telegram.ext import Application, BaseUpdateProcessor
from telegram.request import BaseRequest, RequestData

from bench.conversationhandler_bot import CHECKS
from bot.cli import new_event_loop
from bot.settings import Settings
from bot.telegram.application import build_application, telegram_request, tune_gc
from storage import open_database
from tests.telegram_fakes import ApiCall, FakeBotApi, Updates

REPLIES = ("sendMessage", "editMessageText", "sendDocument")
STEPS_PER_SIGNUP = 16


def signup_updates(updates: Updates, user: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole signup as a phone would send it, with this user's own phone and addresses."""
    uid = user["id"]
    assert uid < 10**7, "the phone numbers below have seven digits for the user"
    steps = [
        updates.text(user, "/start"),
        updates.press(user, "welcome.join"),
        updates.press(user, "consent.rules"),
        updates.press(user, "consent.processing"),
        updates.press(user, "consent.adult"),
        updates.press(user, "consent.continue"),
        updates.press(user, "name.profile"),
        updates.text(user, "Martin"),
        updates.contact(user, f"3361{uid:07d}", owner_id=uid),
        updates.text(user, f"zoe.{uid}@orange.fr"),
        updates.text(user, "69003"),
        updates.press(user, "friends.add"),
        updates.text(user, f"ami.{uid}@free.fr"),
        updates.press(user, "friends.done"),
        updates.text(user, "Que ferez-vous pour les trains de nuit ?"),
        updates.press(user, "summary.confirm"),
    ]
    assert len(steps) == STEPS_PER_SIGNUP
    return steps


class Driver:
    """Plays users: sends a user's next update once the previous one is fully processed, and
    times each update until its first reply reaches the Bot API."""

    def __init__(self) -> None:
        self.application: Application | None = None  # type: ignore[type-arg]
        self.latencies: list[float] = []
        self._first_reply: dict[int, asyncio.Future[float]] = {}
        self._processed: dict[int, asyncio.Future[None]] = {}

    def on_call(self, call: ApiCall) -> None:
        waiter = self._first_reply.pop(call.params.get("chat_id", 0), None)
        if call.method in REPLIES and waiter and not waiter.done():
            waiter.set_result(call.at)

    def on_processed(self, update: object) -> None:
        if isinstance(update, Update):
            done = self._processed.pop(update.update_id, None)
            if done is not None and not done.done():
                done.set_result(None)

    async def send(self, data: dict[str, Any], chat_id: int, record: bool) -> None:
        assert self.application
        # Plain futures under one deadline: the driver plays Telegram and the people, and its
        # own CPU is counted as the bot's (a task per wait cost a few per cent of a step).
        loop = asyncio.get_running_loop()
        replied = self._first_reply[chat_id] = loop.create_future()
        processed = self._processed[data["update_id"]] = loop.create_future()
        sent = time.monotonic()
        await self.application.update_queue.put(Update.de_json(data, self.application.bot))
        async with asyncio.timeout(60):
            at = await replied
            await processed
        if record:
            self.latencies.append(at - sent)


class ObservedRequest(BaseRequest):
    """The bot's real HTTP client, telling the driver when a reply call leaves."""

    def __init__(self, inner: BaseRequest, listener: Callable[[ApiCall], None]) -> None:
        self._inner, self._listener = inner, listener

    @property
    def read_timeout(self) -> float | None:
        return self._inner.read_timeout

    async def initialize(self) -> None:
        await self._inner.initialize()

    async def shutdown(self) -> None:
        await self._inner.shutdown()

    async def do_request(
        self, url: str, method: str, request_data: RequestData | None = None, **timeouts: Any
    ) -> tuple[int, bytes]:
        endpoint = url.rsplit("/", 1)[-1]
        if endpoint in REPLIES and request_data is not None:
            chat = {"chat_id": request_data.parameters.get("chat_id")}
            self._listener(ApiCall(endpoint, chat, at=time.monotonic()))
        return await self._inner.do_request(url, method, request_data, **timeouts)


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


async def play(driver: Driver, user_ids: range, pacer: Pacer, record: bool) -> int:
    updates = Updates(start=user_ids.start * 100)

    async def one(user_id: int) -> int:
        steps = signup_updates(updates, Updates.user(user_id))
        for data in steps:
            await pacer.wait()
            await driver.send(data, user_id, record)
        return len(steps)

    return sum(await asyncio.gather(*(one(user_id) for user_id in user_ids)))


class TailWatch:
    """What a paced run's latency tail comes from: the collector's pauses, how late the event
    loop wakes a 5 ms timer (anything holding the loop: a long step, a blocking call, the
    process waiting for a core), and how busy the process keeps its one core."""

    TICK = 0.005

    def __init__(self) -> None:
        self.gc_pauses: list[float] = []
        self.lateness: list[float] = []
        self._gc_started = 0.0
        self._ticker: asyncio.Task[None] | None = None
        self._cpu = self._wall = 0.0

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        else:
            self.gc_pauses.append(time.perf_counter() - self._gc_started)

    async def _tick(self) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(self.TICK)
            self.lateness.append(time.perf_counter() - before - self.TICK)

    def start(self) -> None:
        gc.callbacks.append(self._on_gc)
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        self._cpu, self._wall = time.process_time(), time.perf_counter()

    async def stop(self) -> dict[str, float]:
        busy = (time.process_time() - self._cpu) / (time.perf_counter() - self._wall)
        # A tick due while something held the loop until now is counted too.
        await asyncio.sleep(self.TICK * 2)
        gc.callbacks.remove(self._on_gc)
        assert self._ticker is not None
        self._ticker.cancel()
        await asyncio.gather(self._ticker, return_exceptions=True)
        late = sorted(self.lateness) or [0.0]
        return {
            "busy_pct": busy * 100,
            "gc_max_ms": max(self.gc_pauses, default=0.0) * 1000,
            "gc_total_ms": sum(self.gc_pauses) * 1000,
            "late_p99_ms": late[min(len(late) - 1, int(0.99 * len(late)))] * 1000,
            "late_max_ms": late[-1] * 1000,
        }


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


def build(
    variant: str, driver: Driver, latency: float, api_url: str | None, workdir: Path
) -> Application:  # type: ignore[type-arg]
    if variant == "conversationhandler":
        from telegram.ext import SimpleUpdateProcessor

        from bench.conversationhandler_bot import build_conversationhandler_bot

        processor = TrackingProcessor(SimpleUpdateProcessor(1), driver.on_processed)
        api = FakeBotApi(latency, listener=driver.on_call, record=False)
        return build_conversationhandler_bot(
            "123456:BENCH", api, workdir / "bench.pickle", processor
        )
    settings = Settings(
        telegram_bot_token="123456:BENCH",
        database_url=database_url(workdir),
        mail_outbox_dir=str(workdir / "outbox"),
        # The fake API has no flood control; Telegram's own would cap replies at 30/s.
        telegram_max_messages_per_second=1_000_000,
        flood_max_messages=1_000,
    )
    request: BaseRequest
    if api_url:
        settings = settings.replace(telegram_api_base_url=api_url)
        request = ObservedRequest(
            telegram_request(settings, settings.max_concurrent_updates), driver.on_call
        )
    else:
        request = FakeBotApi(latency, listener=driver.on_call, record=False)
    application = build_application(settings, request=request)
    # Wrap the composition root's processor, as the baseline's, to see updates finish.
    application._update_processor = TrackingProcessor(
        application.update_processor, driver.on_processed
    )
    return application


async def completed_signups(variant: str, application: Application, workdir: Path) -> int:  # type: ignore[type-arg]
    """Signups that reached their end, read from where each bot keeps them."""
    if variant == "conversationhandler":
        return sum(len(data) == len(CHECKS) for data in application.user_data.values())
    query = "SELECT COUNT(*) FROM participants WHERE completed_at IS NOT NULL"
    return await count_rows(database_url(workdir), query)


# `--database postgresql`: each run in a database of its own on this server, dropped after.
POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432"
_run_database: list[str] = []


def database_url(workdir: Path) -> str:
    if _run_database:
        return f"{POSTGRES_SERVER}/{_run_database[0]}"
    return f"sqlite:///{workdir / 'bench.db'}"


async def count_rows(url: str, query: str) -> int:
    database = await open_database(url)
    try:
        return int((await database.fetch(query))[0][0])
    finally:
        await database.close()


async def server_statement(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(f"{POSTGRES_SERVER}/postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def run_variant(
    variant: str,
    users: int,
    rates: list[float],
    pace_seconds: float,
    latency: float,
    api_url: str | None,
    workdir: Path,
) -> dict[str, Any]:
    driver = Driver()
    application = build(variant, driver, latency, api_url, workdir)
    driver.application = application
    await application.initialize()
    if application.post_init:
        await application.post_init(application)
    await application.start()
    paced: dict[str, dict[str, float]] = {}
    next_user = 1
    try:
        cpu, started = time.process_time(), time.perf_counter()
        steps = await play(driver, range(next_user, next_user + users), Pacer(0), record=False)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        next_user += users
        for rate in rates:
            paced_users = max(10, round(rate * pace_seconds / STEPS_PER_SIGNUP))
            driver.latencies = []
            watch = TailWatch()
            watch.start()
            began = time.perf_counter()
            offered = await play(
                driver, range(next_user, next_user + paced_users), Pacer(rate), record=True
            )
            took = time.perf_counter() - began
            tail = await watch.stop()
            next_user += paced_users
            latencies = sorted(driver.latencies)
            assert len(latencies) == offered
            paced[f"{rate:g}"] = {
                "achieved_per_s": offered / took,
                "p50_ms": statistics.median(latencies) * 1000,
                "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000,
                **tail,
            }
    finally:
        await application.stop()
        await application.shutdown()
        if application.post_shutdown:
            await application.post_shutdown(application)
    signups = next_user - 1
    completed = await completed_signups(variant, application, workdir)
    if completed != signups:
        raise SystemExit(f"{variant}: {completed} of {signups} signups completed; the run is void")
    return {
        "steps_per_s": steps / elapsed,
        "cpu_us_per_step": cpu / steps * 1e6,
        "paced": paced,
        "signups": signups,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def one_process(arguments: argparse.Namespace) -> None:
    rates = [float(rate) for rate in arguments.rates.split(",") if rate]
    if arguments.one == "coffeebot":
        tune_gc(Settings())  # as `coffeebot run` does
    if arguments.database == "postgresql":
        _run_database.append(f"coffeebot_bench_{os.getpid()}")
        asyncio.run(server_statement(f"CREATE DATABASE {_run_database[0]}"))
    loop = new_event_loop()
    try:
        with tempfile.TemporaryDirectory() as workdir:
            run = run_variant(
                arguments.one,
                arguments.users,
                rates,
                arguments.pace_seconds,
                arguments.latency,
                arguments.api_url,
                Path(workdir),
            )
            result = loop.run_until_complete(run)
    finally:
        loop.close()
        if _run_database:
            asyncio.run(server_statement(f"DROP DATABASE {_run_database[0]} WITH (FORCE)"))
    print(json.dumps(result))


def measure(variant: str, api: str, arguments: argparse.Namespace) -> dict[str, Any]:
    """One measurement in a fresh process, with its own Bot API process for `http`."""
    baseline = variant == "conversationhandler"
    command = [sys.executable, "-m", "bench.signup", "--one", variant]
    command += [f"--users={arguments.baseline_users if baseline else arguments.users}"]
    command += [f"--rates={arguments.baseline_rate if baseline else arguments.rates}"]
    command += [f"--pace-seconds={arguments.pace_seconds}", f"--latency={arguments.latency}"]
    command += [f"--database={arguments.database}"]
    server = None
    if api == "http":
        server_command = [sys.executable, "-m", "bench.bot_api", str(arguments.latency)]
        server = subprocess.Popen(
            server_command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert server.stdout
        command += [f"--api-url=http://127.0.0.1:{server.stdout.readline().strip()}/bot"]
    try:
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as error:
        raise SystemExit(f"{variant}/{api} failed:\n{error.stderr[-3000:]}") from None
    finally:
        if server is not None:
            server.communicate("")
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result


def median_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    first = results[0]
    paced = {
        rate: {key: statistics.median(r["paced"][rate][key] for r in results) for key in values}
        for rate, values in first["paced"].items()
    }
    scalars = ("steps_per_s", "cpu_us_per_step", "peak_rss_mb")
    return {
        **{key: statistics.median(r[key] for r in results) for key in scalars},
        "paced": paced,
        "signups": first["signups"],
    }


@dataclass(frozen=True)
class Target:
    """One of issue 15's targets for this 2-core machine, read off the medians."""

    what: str
    api: str  # "inproc" or "http"
    measure: Callable[[dict[str, Any], float], float | None]  # (medians, baseline) -> figure
    at_least: bool
    bound: float


def _p99_at(rate: str) -> Callable[[dict[str, Any], float], float | None]:
    return lambda m, _: m["paced"][rate]["p99_ms"] if rate in m["paced"] else None


def _times_baseline(medians: dict[str, Any], baseline: float) -> float:
    return float(medians["steps_per_s"]) / baseline


TARGETS = (
    Target("steps/s, closed loop", "inproc", lambda m, _: m["steps_per_s"], True, 2000),
    Target("CPU µs a step", "inproc", lambda m, _: m["cpu_us_per_step"], False, 500),
    Target("p99 ms at 1000 steps/s offered", "inproc", _p99_at("1000"), False, 60),
    Target("times the ConversationHandler bot", "inproc", _times_baseline, True, 40),
    Target("steps/s, closed loop", "http", lambda m, _: m["steps_per_s"], True, 1000),
    Target("p99 ms at 600 steps/s offered", "http", _p99_at("600"), False, 100),
    Target("times the ConversationHandler bot", "http", _times_baseline, True, 40),
)


def verdicts(medians: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Each target: the figure, the bound, and whether it is met (or not measured)."""
    baseline = medians["conversationhandler", ""]["steps_per_s"]
    lines = []
    for target in TARGETS:
        sign = "≥" if target.at_least else "<"
        m = medians.get(("coffeebot", target.api))
        figure = target.measure(m, baseline) if m is not None else None
        if figure is None:
            verdict = "not measured"
        else:
            met = figure >= target.bound if target.at_least else figure < target.bound
            verdict = f"{figure:,.1f}: {'met' if met else 'NOT met'}"
        lines.append(f"  {target.api:<6} {target.what} {sign} {target.bound:,g}: {verdict}")
    return lines


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def report(arguments: argparse.Namespace) -> None:
    configurations = [("coffeebot", "inproc"), ("coffeebot", "http"), ("conversationhandler", "")]
    configurations = [c for c in configurations if c[1] != "http" or arguments.http]
    print(f"load before: {uptime()}", flush=True)
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {c: [] for c in configurations}
    for run in range(arguments.runs):
        for variant, api in configurations:
            runs[variant, api].append(measure(variant, api, arguments))
            steps = runs[variant, api][-1]["steps_per_s"]
            print(f"run {run + 1}: {variant:<19} {api or 'inproc':<6} {steps:7.0f} steps/s")
    print(f"load after:  {uptime()}")
    medians = {configuration: median_of(results) for configuration, results in runs.items()}
    baseline = medians["conversationhandler", ""]["steps_per_s"]
    print(
        f"\nMedians of {arguments.runs}; Bot API latency {arguments.latency * 1000:.0f} ms;"
        f" every step committed to {arguments.database} before its reply."
    )
    header = ("bot", "API", "signups", "steps/s", "CPU µs/st", "x CH", "RSS MB")
    print("".join(f"{h:>12}" for h in header) + "   offered/s: achieved/s p50 p99 ms")
    tails: list[str] = []
    for (variant, api), m in medians.items():
        name = "coffeebot" if variant == "coffeebot" else "ConvHandler"
        paced = "  ".join(
            f"{rate}: {p['achieved_per_s']:.0f} {p['p50_ms']:.1f} {p['p99_ms']:.1f}"
            for rate, p in m["paced"].items()
        )
        tails.append(
            f"{name:>12}{api or 'inproc':>12}   "
            + "  ".join(
                f"{rate}: {p['busy_pct']:.0f}% {p['gc_max_ms']:.1f}/{p['gc_total_ms']:.0f}"
                f" {p['late_p99_ms']:.1f}/{p['late_max_ms']:.1f}"
                for rate, p in m["paced"].items()
            )
        )
        print(
            f"{name:>12}{api or 'inproc':>12}{m['signups']:>12}{m['steps_per_s']:>12.0f}"
            f"{m['cpu_us_per_step']:>12.0f}{m['steps_per_s'] / baseline:>12.1f}"
            f"{m['peak_rss_mb']:>12.0f}   {paced}"
        )
    print(
        "\nWhere the tail comes from, per offered rate: the bot process's CPU busy %, the"
        " collector's longest/total pause ms, the event loop's lateness p99/max ms"
    )
    print("\n".join(tails))
    print("\nIssue 15's targets on this machine (medians above):")
    print("\n".join(verdicts(medians)))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each; medians are shown")
    parser.add_argument("--users", type=int, default=300, help="users in the closed loop")
    parser.add_argument(
        "--rates", default="300,600,1000", help="steps/s offered for the latency runs"
    )
    parser.add_argument("--pace-seconds", type=float, default=5.0, help="length of a paced run")
    parser.add_argument("--baseline-users", type=int, default=40)
    parser.add_argument("--baseline-rate", default="20", help="steps/s offered to the baseline")
    parser.add_argument("--latency", type=float, default=0.020, help="Bot API latency in seconds")
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="where coffeebot commits each step (PostgreSQL on 127.0.0.1:5432)",
    )
    parser.add_argument(
        "--http",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure through the Bot API over loopback HTTP",
    )
    # Between processes.
    variants = ["coffeebot", "conversationhandler"]
    parser.add_argument("--one", choices=variants, help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.one:
        one_process(arguments)
    else:
        report(arguments)


if __name__ == "__main__":
    main()
