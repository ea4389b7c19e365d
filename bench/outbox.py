"""Benchmark: outbox throughput to a local SMTP server (aiosmtpd on 127.0.0.1, in its own
process as a real mail server would be), batches of OUTBOX_BATCH_SIZE emails each over one
reused connection, every email marked sent in the database. Prints emails/s for each run and
the median, and checks that the server received every email.

    python -m bench.outbox --emails 2000 --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bot.bootstrap import build_mailer, open_migrated_storage
from bot.cli import new_event_loop
from bot.settings import Settings
from bot.texts import load_catalogue
from conversations.model import Participant, QueueEmail
from tests.smtp_server import free_port


async def one_run(emails: int, workdir: Path, port: int) -> float:
    def clock() -> datetime:
        return datetime.now(UTC)

    settings = Settings(
        database_url=f"sqlite:///{workdir / 'outbox.db'}",
        smtp_url=f"smtp://127.0.0.1:{port}",
        # Throughput is measured: the hourly cap must not pause the run.
        emails_per_hour=emails,
    )
    store = await open_migrated_storage(settings, clock)
    try:
        for user_id in range(emails):
            person = Participant(user_id, "fr", created_at=clock(), first_name="Zoé")
            params = (
                ("first_name", "Zoé"),
                ("token", f"token-{user_id:016d}"),
                ("code", "123456"),
            )
            email = QueueEmail(
                "confirmation", f"p{user_id}@example.fr", "fr", params, f"c:{user_id}"
            )
            await store.participants.save(person, 0, [email], None, clock())
        mailer = build_mailer(settings, store, load_catalogue(settings), "coffeebot", clock)
        started = time.perf_counter()
        while await mailer.send_due():
            pass
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    return emails / elapsed


def smtp_sink() -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    command = [sys.executable, "-m", "bench.smtp_sink", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert server.stdout and server.stdout.readline().strip() == "ready"
    return server, port


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--emails", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    rates = []
    for run in range(arguments.runs):
        server, port = smtp_sink()
        with tempfile.TemporaryDirectory() as workdir:
            loop = new_event_loop()
            try:
                run_ = one_run(arguments.emails, Path(workdir), port)
                rates.append(loop.run_until_complete(run_))
            finally:
                loop.close()
                server.terminate()
        received = int(server.communicate()[0].strip())
        assert received == arguments.emails, f"{received} of {arguments.emails} arrived"
        print(f"run {run + 1}: {arguments.emails} emails, {rates[-1]:.0f} emails/s")
    print(f"median: {statistics.median(rates):.0f} emails/s (target >= 200)")


if __name__ == "__main__":
    main()
