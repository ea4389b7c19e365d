"""Benchmark: the admin tools over a million stored participants, on SQLite and PostgreSQL.

`populate` stores N confirmed participants with their entries in bulk (SQL set operations, not
the bot's steps); each measurement then runs in a process of its own, as the bot would answer
the command, and prints its seconds and the process's peak RSS:

    python -m bench.million populate --url sqlite:////tmp/million.db --participants 1000000
    python -m bench.million measure --url sqlite:////tmp/million.db --runs 3

stats: /stats's figures (SQL aggregates). export: /export's CSV, streamed into a file. draw:
/draw's ticket list read as sorted strings, its hash, and the draw itself over it, ordering in
one process (bench.draw measures the parallel ordering), then the winners' holders.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bot.admin.exports import write_export
from conversations.draw import Beacon, BeaconSource, FrozenDraw, draw, tickets_sha256
from conversations.ledger import GENESIS
from storage import Storage, open_storage
from storage.database import Dialect
from storage.migrator import migrate

_AT = "2026-11-26T10:00:00+00:00"
_CONSENTS = json.dumps(
    [{"kind": kind, "version": "fr-v", "given_at": _AT} for kind in ("adult", "draw")]
)
# One statement per backend: numbers 1..N, then the rows made from them.
_NUMBERS = {
    Dialect.SQLITE: "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)",
    Dialect.POSTGRESQL: "WITH n(i) AS (SELECT generate_series(1, CAST(? AS BIGINT)))",
}
_PADDED = {
    Dialect.SQLITE: "printf('%08d', i)",
    Dialect.POSTGRESQL: "lpad(CAST(i AS TEXT), 8, '0')",
}


async def populate(url: str, participants: int) -> None:
    storage = await open_storage(url)
    try:
        await migrate(storage.database, datetime.now(UTC))
        dialect = storage.database.dialect
        padded = _PADDED[dialect]
        await storage.database.run(
            [
                (
                    f"{_NUMBERS[dialect]} INSERT INTO participants (user_id, version, language,"
                    " step, paused, editing, consent_ticks, first_name, last_name, phone, email,"
                    " postcode, departement, area, question, created_at, updated_at,"
                    " completed_at, code_failures, confirmation_sends, friends_invited, actions,"
                    " availability) SELECT i, 1, 'fr', 'complete', 0, 0, '', 'Zoé', 'Martin',"
                    f" '+336' || {padded}, 'p' || {padded} || '@free.fr', '69003', '69',"
                    " 'province', CASE WHEN i % 1000 = 0 THEN 'Question ' || i END, ?, ?, ?,"
                    " '', '', 0, CASE WHEN i % 3 = 0 THEN 'leaflets' ELSE '' END, '' FROM n",
                    (participants, _AT, _AT, _AT),
                ),
                (
                    "INSERT INTO entries SELECT user_id, 'T' || substr(phone, 5), email, phone,"
                    " postcode, departement, area, ?, created_at, NULL, updated_at"
                    " FROM participants",
                    (_CONSENTS,),
                ),
            ]
        )
    finally:
        await storage.close()


async def _stats(storage: Storage) -> str:
    figures = await storage.reports.statistics()
    return f"{figures.confirmed} confirmed, {figures.eligible} eligible"


async def _export(storage: Storage) -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "participants.csv"
        rows = await write_export(storage, path)
        return f"{rows} rows, {path.stat().st_size // 1_000_000} MB"


async def _draw(storage: Storage) -> str:
    entries = await storage.draws.entries()
    digest = tickets_sha256(entries.tickets)
    now = datetime.now(UTC)
    frozen = FrozenDraw(secrets.token_bytes(32), entries.tickets, 5, 5, now, ())
    beacon = Beacon(BeaconSource.MANUAL, secrets.token_hex(32), now.isoformat())
    certificate = draw(frozen, beacon, now, GENESIS)
    holders = await storage.draws.holders([*certificate.winners, *certificate.reserves])
    return f"{len(entries.tickets)} tickets, sha256 {digest[:12]}…, {len(holders)} holders"


OPERATIONS = {"stats": _stats, "export": _export, "draw": _draw}


async def _once(url: str, operation: str) -> None:
    storage = await open_storage(url)
    try:
        started = time.perf_counter()
        what = await OPERATIONS[operation](storage)
        seconds = time.perf_counter() - started
    finally:
        await storage.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "did": what}))


def measure(url: str, runs: int) -> None:
    for operation in OPERATIONS:
        results = [
            json.loads(
                subprocess.run(
                    [sys.executable, "-m", "bench.million", "once", "--url", url, operation],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            for _ in range(runs)
        ]
        seconds = statistics.median(r["seconds"] for r in results)
        peak = max(r["peak_mb"] for r in results)
        print(
            f"{operation:7} median {seconds:6.2f} s of {runs}, peak RSS {peak:5.0f} MB"
            f" ({results[0]['did']})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fill = commands.add_parser("populate")
    fill.add_argument("--url", required=True)
    fill.add_argument("--participants", type=int, default=1_000_000)
    timing = commands.add_parser("measure")
    timing.add_argument("--url", required=True)
    timing.add_argument("--runs", type=int, default=3)
    once = commands.add_parser("once")
    once.add_argument("--url", required=True)
    once.add_argument("operation", choices=sorted(OPERATIONS))
    arguments = parser.parse_args()
    if arguments.command == "populate":
        asyncio.run(populate(arguments.url, arguments.participants))
    elif arguments.command == "measure":
        measure(arguments.url, arguments.runs)
    else:
        asyncio.run(_once(arguments.url, arguments.operation))


if __name__ == "__main__":
    main()
