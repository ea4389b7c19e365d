"""Benchmark: the draw over a million tickets (duplicate check, list hash, HMAC ordering,
certificate) as the bot runs it, ordering spread over the cores, and in one process as the core
alone does; then the verification. The list is sorted, as the frozen list the bot stores is.
Prints seconds for each run and the medians.

    python -m bench.draw --tickets 1000000 --runs 3
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time
from datetime import UTC, datetime

from bot.admin.drawing import first_drawn_in_parallel
from bot.service import new_ticket
from conversations.draw import Beacon, BeaconSource, FrozenDraw, draw, verify
from conversations.ledger import GENESIS


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    tickets = sorted({new_ticket() for _ in range(arguments.tickets)})
    parallel, single, verifying = [], [], []
    for run in range(arguments.runs):
        now = datetime.now(UTC)
        frozen = FrozenDraw(secrets.token_bytes(32), tickets, 5, 5, now, ())
        beacon = Beacon(BeaconSource.MANUAL, secrets.token_hex(32), now.isoformat())
        started = time.perf_counter()
        certificate = draw(frozen, beacon, now, GENESIS, order=first_drawn_in_parallel)
        parallel.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert draw(frozen, beacon, now, GENESIS).winners == certificate.winners
        single.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert verify(certificate.to_json(), tickets) == []
        verifying.append(time.perf_counter() - started)
        print(
            f"run {run + 1}: {len(tickets)} tickets, draw {parallel[-1]:.2f} s"
            f" (one process: {single[-1]:.2f} s), verify {verifying[-1]:.2f} s"
        )
    print(
        f"median: draw {statistics.median(parallel):.2f} s (target < 2 s),"
        f" one process {statistics.median(single):.2f} s,"
        f" verify {statistics.median(verifying):.2f} s, on {os.cpu_count()} cores"
    )


if __name__ == "__main__":
    main()
