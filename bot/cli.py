"""The coffeebot command: run the Telegram bot, try the conversation in a terminal, update the
database, and the draw's and the export's files. Settings come from the environment and .env."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from dotenv import load_dotenv

from bot.logs import quiet_payload_loggers
from bot.settings import Settings, SettingsError
from storage import UnsupportedDatabase, described

if TYPE_CHECKING:
    from telegram.ext import Application

log = logging.getLogger("coffeebot")

NO_TOKEN = """TELEGRAM_BOT_TOKEN is not set.
Get a token from @BotFather on Telegram (/newbot), then put it in .env:
    TELEGRAM_BOT_TOKEN=123456:ABC...
To try the conversation without a token, run:  coffeebot console"""

WRONG_TOKEN = (
    "coffeebot: Telegram refused TELEGRAM_BOT_TOKEN: copy it again from @BotFather"
    " (/mybots, your bot, API Token) into .env"
)

# Exit statuses: a setting to fix, or a condition outside (network, another process).
EXIT_CONFIGURATION = 2
EXIT_ENVIRONMENT = 1

EPILOG = """settings: TELEGRAM_BOT_TOKEN, DATABASE_URL, SMTP_URL, MAIL_OUTBOX_DIR and the others
listed in README.md, from the environment or a .env file (COFFEEBOT_ENV_FILE names another).
With no command, coffeebot runs the bot."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coffeebot",
        description="The campaign's 'prendre un café avec le candidat' Telegram bot.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", help="what to do (default: run)"
    )
    commands.add_parser(
        "run",
        help="run the Telegram bot (long polling); the default command",
        description="Run the Telegram bot: long polling, the outbox sender and the draw's "
        "deadlines. Needs TELEGRAM_BOT_TOKEN. Stops cleanly on SIGTERM or Ctrl-C.",
    )
    console = commands.add_parser(
        "console",
        help="try the conversation in this terminal, without Telegram",
        description="Run the same conversation on the same database, reading stdin line by "
        "line: type a choice's number or label, /contact +33612345678 to share a phone "
        "number, any command; it ends at the end of input (Ctrl-D).",
    )
    console.add_argument(
        "--user-id", type=int, default=1, help="the Telegram user id to play (default: 1)"
    )
    console.add_argument("--first-name", help="the first name Telegram would give the bot")
    console.add_argument("--last-name", help="the last name Telegram would give the bot")
    console.add_argument(
        "--language",
        choices=["fr", "en"],
        help="the language Telegram would report (default: DEFAULT_LANGUAGE)",
    )
    webhook = commands.add_parser(
        "webhook",
        help="run the bot in webhook mode, or register its webhook with Telegram",
        description="With no action: serve Telegram's webhook on WEBHOOK_LISTEN at WEBHOOK_PATH "
        "(plus GET /healthz, and the unsubscribe links when PUBLIC_URL is set) behind an HTTPS "
        "reverse proxy; needs WEBHOOK_SECRET. An update is answered 200 only once processed. "
        "Stops cleanly on SIGTERM, finishing the requests in flight. The actions register the "
        "webhook once, from one place: set (WEBHOOK_URL, or PUBLIC_URL + WEBHOOK_PATH; "
        "WEBHOOK_SECRET; WEBHOOK_MAX_CONNECTIONS), delete (back to polling), info.",
    )
    webhook.add_argument(
        "action",
        nargs="?",
        choices=["set", "delete", "info"],
        help="register (set), remove (delete) or show (info) the webhook; none: serve it",
    )
    webhook.add_argument(
        "--drop-pending-updates",
        action="store_true",
        help="with set or delete: drop the updates Telegram holds (kept by default)",
    )
    commands.add_parser(
        "migrate",
        help="bring the database schema up to date",
        description="Apply the schema migrations DATABASE_URL still needs, then say the version.",
    )
    draw = commands.add_parser(
        "draw",
        help="write the draw's ticket list, verify a draw, or write its verification page",
        description="The files anyone needs to check a draw.",
    )
    draw_commands = draw.add_subparsers(
        dest="draw_command", metavar="ACTION", required=True, help="tickets, verify or page"
    )
    tickets = draw_commands.add_parser(
        "tickets",
        help="write the ticket list the draw froze, one per line",
        description="Write the ticket list the last /draw froze, sorted, one per line.",
    )
    tickets.add_argument("--output", "-o", help="file to write (default: standard output)")
    verify = draw_commands.add_parser(
        "verify",
        help="redo a draw from its certificate and ticket list",
        description="Redo the draw and say OK, or what does not match. Needs no settings.",
    )
    verify.add_argument("certificate", help="the certificate the bot sent (JSON)")
    verify.add_argument("tickets", help="the published ticket list, one per line")
    verify.add_argument("--addenda", help="the draw's addenda, JSON (sent with /gagnants)")
    page = draw_commands.add_parser(
        "page",
        help="write the verification page, one self-contained HTML file",
        description="Write one HTML file that redoes the draw in any browser, offline: from "
        "files the visitor picks, or from files embedded with --embed.",
    )
    page.add_argument("--output", "-o", required=True, help="the HTML file to write")
    page.add_argument(
        "--embed",
        nargs=3,
        metavar=("CERTIFICATE", "TICKETS", "ADDENDA"),
        help="put these files in the page (ADDENDA may be -, for none)",
    )
    page.add_argument(
        "--language", choices=["fr", "en"], default="fr", help="the page's language (default: fr)"
    )
    export = commands.add_parser(
        "export",
        help="write the confirmed participants as CSV (personal data)",
        description="Write the confirmed participants as CSV, as /export does. It holds "
        "phones and emails: write it outside the repository or to an ignored name.",
    )
    export.add_argument("--output", "-o", help="file to write (default: standard output)")
    expenses = commands.add_parser(
        "expenses",
        help="write the winners' travel expenses as CSV, for the mandataire (personal data)",
        description="Write one line per travel expense (name, postcode, area class, cap, "
        "claimed, paid, date paid, payment references, receipts' SHA-256), then the totals, "
        "in the export's safe CSV format (UTF-8, ';', no cell a spreadsheet runs).",
    )
    expenses.add_argument("--output", "-o", help="file to write (default: standard output)")
    copy = commands.add_parser(
        "copy-db",
        help="copy a whole campaign into an empty database (SQLite to PostgreSQL, say)",
        description="Copy every table from SOURCE_URL into TARGET_URL, migrating both first, "
        "then check that each table holds as many rows on both sides. Refuses a target that "
        "holds any row. Stop the bot first: rows written during the copy would be missed.",
    )
    copy.add_argument("source", metavar="SOURCE_URL", help="the database to copy from")
    copy.add_argument("target", metavar="TARGET_URL", help="an empty database to copy into")
    purge = commands.add_parser(
        "purge",
        help="erase what the retention settings say is due (the bot does it every day)",
        description="Erase what the privacy notice says is due: signups unfinished for "
        "RETENTION_INCOMPLETE_DAYS, and RETENTION_AFTER_END_DAYS after OPERATION_ENDS_AT "
        "everything but news contacts, tickets and the mandataire's expense lines. Prints the "
        "rows per rule and table, and logs them in the audit log.",
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="only count the rows due; change nothing"
    )
    audit = commands.add_parser(
        "audit",
        help="check the admins' audit log",
        description="The admins' audit log is a hash chain: say whether any entry was edited, "
        "removed or reordered.",
    )
    audit_commands = audit.add_subparsers(
        dest="audit_command", metavar="ACTION", required=True, help="verify"
    )
    audit_verify = audit_commands.add_parser(
        "verify",
        help="check the log's hash chain",
        description="Recompute every entry's hash and link; exit 0 when the chain holds.",
    )
    audit_verify.add_argument(
        "--certificate", help="also check that the chain head this certificate names is in the log"
    )
    return parser


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (it measured ~35% more steps/s), asyncio's loop elsewhere."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: list[str] | None = None) -> int:
    arguments = build_parser().parse_args(argv)
    command = arguments.command or "run"
    if command == "draw" and arguments.draw_command == "verify":
        return verify_draw(arguments.certificate, arguments.tickets, arguments.addenda)
    if command == "draw" and arguments.draw_command == "page":
        from bot.admin.verify_page import write_page

        return write_page(arguments.output, arguments.language, arguments.embed)

    # Every file the bot makes (database, key, emails, exports) is its user's only.
    os.umask(0o077)
    load_dotenv(os.environ.get("COFFEEBOT_ENV_FILE", ".env"))
    try:
        settings = Settings.from_env(os.environ)
        database = described(settings.database_url)
    except (SettingsError, UnsupportedDatabase) as error:
        print(f"coffeebot: {error}", file=sys.stderr)
        return EXIT_CONFIGURATION
    logging.basicConfig(
        level=logging.WARNING if command == "console" else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    quiet_payload_loggers()
    for handler in logging.getLogger().handlers:
        handler.addFilter(NoNetworkTracebacks(settings.telegram_bot_token))
    try:
        return run_command(command, arguments, settings)
    except SettingsError as error:  # found only once the database is open: a missing key file
        print(f"coffeebot: {error}", file=sys.stderr)
        return EXIT_CONFIGURATION
    except OSError as error:  # a database server refusing connections, or an unknown host
        print(f"coffeebot: cannot reach {database}: {error.strerror or error}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except sqlite3.OperationalError as error:
        if "locked" not in str(error):
            raise
        print(
            f"coffeebot: the database {database} is locked by another process (another"
            f" coffeebot?); gave up after SQLITE_BUSY_TIMEOUT_MS={settings.sqlite_busy_timeout_ms}",
            file=sys.stderr,
        )
        return EXIT_ENVIRONMENT


def run_command(command: str, arguments: argparse.Namespace, settings: Settings) -> int:
    # Imported here so that `coffeebot --help` and a missing token answer at once.
    from bot.bootstrap import migrated_storage, utc_now

    if command == "run":
        if not settings.telegram_bot_token:
            print(NO_TOKEN, file=sys.stderr)
            return EXIT_CONFIGURATION
        from bot.mail.unsubscribe import public_url

        try:
            public_url(settings)
        except SettingsError as error:
            print(f"coffeebot: {error}", file=sys.stderr)
            return EXIT_CONFIGURATION
        return run_bot(settings)
    if command == "webhook":
        if not settings.telegram_bot_token:
            print(NO_TOKEN, file=sys.stderr)
            return EXIT_CONFIGURATION
        return webhook_command(settings, arguments.action, arguments.drop_pending_updates)
    if command == "migrate":

        async def migrate() -> None:
            from storage.migrator import schema_version

            async with migrated_storage(settings) as storage:
                print(f"database schema at version {await schema_version(storage.database)}")

        asyncio.run(migrate())
        return 0

    if command == "audit":
        from bot.admin.audit import verify_audit

        return verify_audit(settings, arguments.certificate)
    if command == "copy-db":
        return copy_db(arguments.source, arguments.target)
    if command == "export":
        asyncio.run(export(settings, arguments.output))
        return 0
    if command == "purge":
        for line in asyncio.run(purge(settings, arguments.dry_run)):
            print(line)
        return 0
    if command == "expenses":
        csv_content = asyncio.run(expenses_content(settings))
        if arguments.output:
            Path(arguments.output).write_bytes(csv_content)
        else:
            sys.stdout.buffer.write(csv_content)
            sys.stdout.flush()
        return 0
    if command == "draw":
        content = asyncio.run(ticket_file(settings))
        if content is None:
            print("coffeebot: no draw has frozen a ticket list yet (/draw does)", file=sys.stderr)
            return EXIT_ENVIRONMENT
        if arguments.output:
            with open(arguments.output, "wb") as out:
                out.write(content)
        else:
            sys.stdout.buffer.write(content)
        return 0

    from bot.console.terminal import run_console
    from conversations.model import Profile

    profile = Profile(arguments.first_name, arguments.last_name, arguments.language)
    asyncio.run(run_console(settings, profile, arguments.user_id, sys.stdin, sys.stdout, utc_now))
    return 0


def announce_mail(settings: Settings) -> None:
    """Without SMTP_URL nothing is mailed: the bot says so at start, loudly, and where the
    emails (names, addresses, codes) are written instead."""
    if not settings.smtp_url:
        folder = os.path.abspath(settings.mail_outbox_dir)
        log.warning(
            "SMTP_URL is not set: emails are NOT sent, they are written as .eml files into %s"
            " (readable by this user only; for a rehearsal: set SMTP_URL to send them)",
            folder,
        )


class TelegramUnreachable(Exception):
    pass


class NoNetworkTracebacks(logging.Filter):
    """python-telegram-bot logs a traceback for network failures it then handles (a last poll
    at shutdown, say); one line says as much, and no token is ever printed."""

    def __init__(self, token: str | None) -> None:
        super().__init__()
        self._token = token

    def filter(self, record: logging.LogRecord) -> bool:
        from telegram.error import NetworkError

        from bot.telegram.outage import describe

        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, NetworkError):
            record.msg = f"{record.getMessage()} ({describe(error, self._token)})"
            record.args = None
            record.exc_info = None
        return True


def webhook_command(settings: Settings, action: str | None, drop_pending_updates: bool) -> int:
    """Serve the webhook, or register it with Telegram; a setting to fix is one line."""
    from telegram.error import InvalidToken, NetworkError, TelegramError

    from bot.mail.unsubscribe import public_url
    from bot.telegram.application import ALLOWED_UPDATES
    from bot.telegram.registration import WebhookAction, register
    from bot.telegram.webhook import checked_secret, listen_address, webhook_path

    try:
        if action is None:
            checked_secret(settings)
            listen_address(settings)
            public_url(settings)
            webhook_path(settings)
            return run_bot(settings, webhook=True)
        registration = register(
            settings, WebhookAction(action), list(ALLOWED_UPDATES), drop_pending_updates
        )
        asyncio.run(registration)
    except SettingsError as error:
        print(f"coffeebot: {error}", file=sys.stderr)
        return EXIT_CONFIGURATION
    except InvalidToken:
        print(WRONG_TOKEN, file=sys.stderr)
        return EXIT_CONFIGURATION
    except NetworkError as error:
        from bot.telegram.outage import describe

        reason = describe(error, settings.telegram_bot_token)
        print(f"coffeebot: cannot reach the Telegram Bot API ({reason})", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except TelegramError as error:
        print(f"coffeebot: Telegram refused: {error.message}", file=sys.stderr)
        return EXIT_CONFIGURATION
    return 0


def run_bot(settings: Settings, webhook: bool = False) -> int:
    """Reach Telegram (retrying with a doubling wait), then poll, or serve the webhook, until a
    stop signal."""
    from telegram.error import InvalidToken

    from bot.bootstrap import utc_now
    from bot.mail.unsubscribe import public_url
    from bot.telegram.application import ALLOWED_UPDATES, OUTAGE, build_application, tune_gc
    from bot.telegram.webhook import HttpServer, http_app, serve_webhook

    application = build_application(settings)
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    reach = loop.create_task(reach_telegram(application, settings))
    stopping = asyncio.Event()

    def stop() -> None:
        if not reach.done():
            reach.cancel()
            return
        application.bot_data[OUTAGE].cut_short()
        stopping.set()
        if not webhook:
            application.stop_running()

    # python-telegram-bot's own handlers would wait out an outage's sleep between two polls.
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stop)
    try:
        try:
            loop.run_until_complete(reach)
        except asyncio.CancelledError:
            log.info("stopped before Telegram answered")
            return 0
        except InvalidToken:
            print(WRONG_TOKEN, file=sys.stderr)
            return EXIT_CONFIGURATION
        except TelegramUnreachable as error:
            print(f"coffeebot: {error}", file=sys.stderr)
            return EXIT_ENVIRONMENT
        tune_gc(settings)
        announce_mail(settings)  # once Telegram answered: a refused token stays one line
        if webhook:
            loop.run_until_complete(serve_webhook(application, settings, utc_now, stopping))
            return 0
        # Beside polling, the server answers only the unsubscribe links and /healthz.
        beside = None
        if public_url(settings):
            beside = HttpServer(http_app(application, settings, utc_now, webhook=False), settings)
            loop.run_until_complete(beside.start())
        try:
            application.run_polling(
                allowed_updates=ALLOWED_UPDATES, stop_signals=None, close_loop=False
            )
        finally:
            if beside is not None:
                loop.run_until_complete(beside.stop())
        return 0
    finally:
        loop.close()


async def reach_telegram(application: Application, settings: Settings) -> None:  # type: ignore[type-arg]
    """Initialise the bot (getMe); while the API cannot be reached, try again with a doubling
    wait, and give up after TELEGRAM_START_TIMEOUT_SECONDS."""
    from telegram.error import NetworkError

    from bot.telegram.outage import describe

    host = urlsplit(settings.telegram_api_base_url).netloc
    give_up = time.monotonic() + settings.telegram_start_timeout_seconds
    wait = 1.0
    while True:
        try:
            await application.initialize()
            return
        except NetworkError as error:  # TimedOut too; InvalidToken is not a NetworkError
            reason = describe(error, settings.telegram_bot_token)
            left = give_up - time.monotonic()
            if left <= 0:
                raise TelegramUnreachable(
                    f"cannot reach the Telegram Bot API at {host} ({reason}); gave up after"
                    f" TELEGRAM_START_TIMEOUT_SECONDS={settings.telegram_start_timeout_seconds:g}"
                ) from None
            wait = min(wait, left)
            log.warning(
                "cannot reach the Telegram Bot API at %s (%s); trying again in %.3g s",
                host,
                reason,
                wait,
            )
            await asyncio.sleep(wait)
            wait = min(2 * wait, settings.telegram_retry_max_seconds)


def verify_draw(certificate_path: str, tickets_path: str, addenda_path: str | None) -> int:
    """Prints whether the certificate's draw, with its addenda, is what the ticket list gives;
    0 when it is."""
    from conversations.draw import verify

    try:
        with open(certificate_path, encoding="utf-8") as certificate_file:
            certificate = json.load(certificate_file)
        with open(tickets_path, encoding="ascii") as tickets_file:
            tickets = [line.strip() for line in tickets_file if line.strip()]
        addenda = []
        if addenda_path:
            with open(addenda_path, encoding="utf-8") as addenda_file:
                addenda = json.load(addenda_file)
    except OSError as error:
        print(f"coffeebot: cannot read {error.filename}: {error.strerror}", file=sys.stderr)
        return EXIT_CONFIGURATION
    except (ValueError, UnicodeDecodeError) as error:
        # A JSON error says where; a ticket list with other characters is not one.
        print(f"coffeebot: not a certificate and a ticket list: {error}", file=sys.stderr)
        return EXIT_CONFIGURATION
    problems = verify(certificate, tickets, addenda)
    if problems:
        for problem in problems:
            print(f"MISMATCH: {problem}")
        return 1
    print(f"OK: {len(tickets)} tickets, seed {certificate['seed']}")
    beacon = certificate.get("beacon")
    if beacon:
        print(f"beacon:   {beacon['source']} {beacon.get('round', '')} {beacon['value']}")
    print(f"winners:  {' '.join(certificate['winners'])}")
    print(f"reserves: {' '.join(certificate['reserves'])}")
    for addendum in addenda:
        print(
            f"addendum {addendum['seq']}: {addendum['replaced']} replaced ({addendum['reason']}),"
            f" {addendum['promoted'] or 'no reserve left'} promoted"
        )
    return 0


async def ticket_file(settings: Settings) -> bytes | None:
    """The ticket list the draw froze (None before any draw)."""
    from bot.bootstrap import migrated_storage
    from conversations.draw import ticket_list

    async with migrated_storage(settings) as storage:
        record = await storage.draws.draw()
    if record is None or not record.tickets:
        return None
    return ticket_list(record.tickets).encode("ascii")


async def export(settings: Settings, output: str | None) -> None:
    """The CSV export, streamed row by row into the file or to standard output."""
    from bot.admin.exports import export_into, write_export
    from bot.bootstrap import migrated_storage

    async with migrated_storage(settings) as storage:
        if output:
            await write_export(storage, Path(output))
        else:
            await export_into(storage, sys.stdout)
            sys.stdout.flush()


async def purge(settings: Settings, dry_run: bool) -> list[str]:
    from bot.admin.purge import Purge
    from bot.bootstrap import migrated_storage, utc_now

    async with migrated_storage(settings) as storage:
        report = await Purge(storage, settings, utc_now).run(dry_run)
    return report.lines()


async def expenses_content(settings: Settings) -> bytes:
    """The mandataire's CSV: one line per travel expense, then the totals."""
    from bot.admin.expenses import expenses_csv_of
    from bot.bootstrap import migrated_storage

    async with migrated_storage(settings) as storage:
        return await expenses_csv_of(storage, settings)


def copy_db(source: str, target: str) -> int:
    from storage.copy import CopyRefused, copy_database

    try:
        counts = asyncio.run(copy_database(source, target, datetime.now(UTC)))
    except (CopyRefused, UnsupportedDatabase) as error:
        print(f"coffeebot copy-db: {error}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    for table, count in counts.items():
        print(f"{table}: {count} rows")
    print(f"OK: {sum(counts.values())} rows copied to {described(target)}, counts checked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
