"""Benchmark: full signups in webhook mode, with one and with two `coffeebot webhook` replicas
on one PostgreSQL database, through real loopback HTTP in both directions.

Telegram's side is this process: it posts each user's next update to a replica (in turn, as a
balancer would) and waits for the answer, which the webhook gives only once the step is
committed and its replies have left; the replies go to a Bot API in a process of its own
(bench.bot_api) that answers after --latency. So a step's time is the whole round: update in,
transaction, replies out, 200 back. The run fails unless every signup completed.

For each replica count: steps/s with every user going as fast as the answers come (closed
loop), the replicas' CPU per step (user + system, from /proc), and the step's p50/p99. Each
measurement starts fresh processes and a fresh database, --runs times; the table gives medians.

    python -m bench.webhook                   # 1 and 2 replicas, medians of 3
    python -m bench.webhook --runs 1 --users 100 --replicas 2
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.signup import POSTGRES_SERVER, count_rows, server_statement, signup_updates, uptime
from tests.live import healthy
from tests.smtp_server import free_port
from tests.telegram_fakes import Updates

SECRET = "bench-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def cpu_seconds(pid: int) -> float:
    """User + system time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_replica(port: int, api_url: str, database: str, replicas: int, workdir: Path) -> Any:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("TELEGRAM_")
    }
    environment |= {
        "TELEGRAM_BOT_TOKEN": "123456:BENCH",
        "TELEGRAM_API_BASE_URL": api_url,
        "DATABASE_URL": database,
        "WEBHOOK_LISTEN": f"127.0.0.1:{port}",
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_REPLICAS": str(replicas),
        "MAIL_OUTBOX_DIR": str(workdir / "outbox"),
        "COFFEEBOT_ENV_FILE": str(workdir / "none.env"),
        # The bench's Bot API has no flood control; Telegram's would cap replies at 30/s.
        "TELEGRAM_MAX_MESSAGES_PER_SECOND": "1000000",
        "FLOOD_MAX_MESSAGES": "1000",
    }
    log = (workdir / f"replica-{port}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "webhook"],
        env=environment,
        cwd=workdir,
        stdout=log,
        stderr=log,
    )


async def drive(urls: list[str], users: int, first: int = 1) -> tuple[int, float, list[float]]:
    """Every user's whole signup, each update after the answer to the previous one."""
    updates = Updates(start=first * 100)
    turn = itertools.cycle(urls)
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        for url in urls:
            await healthy(url, 60)

        async def one(user_id: int) -> int:
            steps = signup_updates(updates, Updates.user(user_id))
            for data in steps:
                sent = time.perf_counter()
                async with http.post(
                    f"{next(turn)}/telegram", json=data, headers={SECRET_HEADER: SECRET}
                ) as answer:
                    await answer.read()
                    if answer.status != 200:
                        raise SystemExit(f"update {data['update_id']}: HTTP {answer.status}")
                latencies.append(time.perf_counter() - sent)
            return len(steps)

        started = time.perf_counter()
        steps = sum(await asyncio.gather(*(one(first + n) for n in range(users))))
        return steps, time.perf_counter() - started, latencies


def run_replicas(
    replicas: int, api_url: str, database: str, workdir: Path, users: int
) -> tuple[int, float, float, list[float]]:
    """Start the replicas, drive the signups, stop the replicas (SIGTERM); the replicas' CPU."""
    processes = []
    try:
        ports = [free_port() for _ in range(replicas)]
        for port in ports:
            processes.append(start_replica(port, api_url, database, replicas, workdir))
            time.sleep(1)  # one migrates the new database; the next finds it done
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        asyncio.run(drive(urls[:1], 1, first=9_000_000))  # one signup to warm up
        cpu = sum(cpu_seconds(p.pid) for p in processes)
        steps, elapsed, latencies = asyncio.run(drive(urls, users))
        cpu = sum(cpu_seconds(p.pid) for p in processes) - cpu
        query = "SELECT COUNT(*) FROM participants WHERE completed_at IS NOT NULL"
        completed = asyncio.run(count_rows(database, query))
        if completed != users + 1:
            raise SystemExit(f"{completed} of {users + 1} signups completed: the run is void")
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(30)
    return steps, elapsed, cpu, latencies


def measure(replicas: int, arguments: argparse.Namespace) -> dict[str, float]:
    name = f"coffeebot_bench_webhook_{os.getpid()}"
    asyncio.run(server_statement(f"CREATE DATABASE {name}"))
    database = f"{POSTGRES_SERVER}/{name}"
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.bot_api", str(arguments.latency)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout
        api_url = f"http://127.0.0.1:{server.stdout.readline().strip()}/bot"
        with tempfile.TemporaryDirectory() as workdir:
            steps, elapsed, cpu, latencies = run_replicas(
                replicas, api_url, database, Path(workdir), arguments.users
            )
    finally:
        server.communicate("")
        asyncio.run(server_statement(f"DROP DATABASE {name} WITH (FORCE)"))
    latencies.sort()
    return {
        "steps_per_s": steps / elapsed,
        "cpu_us_per_step": cpu / steps * 1e6,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(0.99 * (len(latencies) - 1))] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each; medians are shown")
    parser.add_argument("--users", type=int, default=200, help="users in the closed loop")
    parser.add_argument("--latency", type=float, default=0.020, help="Bot API latency in seconds")
    parser.add_argument("--replicas", default="1,2", help="replica counts to measure")
    arguments = parser.parse_args()
    counts = [int(count) for count in arguments.replicas.split(",")]
    print(f"load before: {uptime()}", flush=True)
    results: dict[int, list[dict[str, float]]] = {count: [] for count in counts}
    for run in range(arguments.runs):
        for count in counts:
            results[count].append(measure(count, arguments))
            steps = results[count][-1]["steps_per_s"]
            print(f"run {run + 1}: {count} replica(s) {steps:7.0f} steps/s", flush=True)
    print(f"load after:  {uptime()}")
    steps = len(signup_updates(Updates(), Updates.user(1)))
    print(
        f"\nMedians of {arguments.runs}; {arguments.users} users, {steps} steps each;"
        f" Bot API latency {arguments.latency * 1000:.0f} ms; PostgreSQL."
    )
    print(f"{'replicas':>10}{'steps/s':>10}{'CPU µs/step':>14}{'p50 ms':>10}{'p99 ms':>10}")
    for count, runs in results.items():
        median = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(
            f"{count:>10}{median['steps_per_s']:>10.0f}{median['cpu_us_per_step']:>14.0f}"
            f"{median['p50_ms']:>10.1f}{median['p99_ms']:>10.1f}"
        )


if __name__ == "__main__":
    main()
