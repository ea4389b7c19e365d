"""`coffeebot run | console | migrate`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys

from dotenv import load_dotenv

from bot.settings import Settings, SettingsError

NO_TOKEN = """TELEGRAM_BOT_TOKEN is not set.
Get a token from @BotFather on Telegram (/newbot), then put it in .env:
    TELEGRAM_BOT_TOKEN=123456:ABC...
To try the conversation without a token, run:  coffeebot console"""


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where it is installed (it measured ~35% more steps/s), asyncio's loop elsewhere."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coffeebot", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="run the Telegram bot (long polling)")
    commands.add_parser("migrate", help="bring the database schema up to date")
    console = commands.add_parser("console", help="run the conversation in this terminal")
    console.add_argument("--user-id", type=int, default=1)
    console.add_argument("--first-name")
    console.add_argument("--last-name")
    console.add_argument("--language", choices=["fr", "en"])
    draw = commands.add_parser("draw", help="the draw's ticket list, and its verification")
    draw_commands = draw.add_subparsers(dest="draw_command", required=True)
    tickets = draw_commands.add_parser("tickets", help="write the ticket list the draw froze")
    tickets.add_argument("--output", "-o", help="file to write (default: standard output)")
    verify = draw_commands.add_parser("verify", help="redo a draw and compare with its certificate")
    verify.add_argument("certificate", help="the certificate, JSON")
    verify.add_argument("tickets", help="the ticket list, one per line")
    verify.add_argument("--addenda", help="the draw's addenda, JSON (from /gagnants)")
    page = draw_commands.add_parser("page", help="write the verification page, one HTML file")
    page.add_argument("--output", "-o", required=True, help="the HTML file to write")
    page.add_argument(
        "--embed",
        nargs=3,
        metavar=("CERTIFICATE", "TICKETS", "ADDENDA"),
        help="put these files in the page (ADDENDA may be -, for none)",
    )
    page.add_argument("--language", choices=["fr", "en"], default="fr")
    audit = commands.add_parser("audit", help="the admins' audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    audit_verify = audit_commands.add_parser("verify", help="check the log's hash chain")
    audit_verify.add_argument("--certificate", help="also check the chain head it names")
    export = commands.add_parser("export", help="write the confirmed participants as CSV")
    export.add_argument("--output", "-o", help="file to write (default: standard output)")
    arguments = parser.parse_args(argv)
    if arguments.command == "draw" and arguments.draw_command == "verify":
        return verify_draw(arguments.certificate, arguments.tickets, arguments.addenda)
    if arguments.command == "draw" and arguments.draw_command == "page":
        from bot.verify_page import write_page

        return write_page(arguments.output, arguments.language, arguments.embed)

    load_dotenv(os.environ.get("COFFEEBOT_ENV_FILE", ".env"))
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        print(f"coffeebot: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.WARNING if arguments.command == "console" else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)

    # Imported here so that `coffeebot --help` and a missing token answer at once.
    from bot.app import ALLOWED_UPDATES, build_application, open_migrated_store, tune_gc, utc_now

    if arguments.command == "run":
        if not settings.telegram_bot_token:
            print(NO_TOKEN, file=sys.stderr)
            return 2
        asyncio.set_event_loop(new_event_loop())
        tune_gc(settings)
        build_application(settings).run_polling(allowed_updates=ALLOWED_UPDATES)
        return 0
    if arguments.command == "migrate":

        async def migrate() -> None:
            store = await open_migrated_store(settings, utc_now)
            print(f"database schema at version {await store.schema_version()}")
            await store.close()

        asyncio.run(migrate())
        return 0

    if arguments.command == "audit":
        from bot.audit import verify_audit

        return verify_audit(settings, arguments.certificate)
    if arguments.command in ("draw", "export"):
        content = asyncio.run(admin_file(settings, arguments.command))
        if content is None:
            print("coffeebot: no draw has frozen a ticket list yet (/draw does)", file=sys.stderr)
            return 1
        if arguments.output:
            with open(arguments.output, "wb") as out:
                out.write(content)
        else:
            sys.stdout.buffer.write(content)
        return 0

    from bot.console import run_console
    from conversations.model import Profile

    profile = Profile(arguments.first_name, arguments.last_name, arguments.language)
    asyncio.run(run_console(settings, profile, arguments.user_id, sys.stdin, sys.stdout, utc_now))
    return 0


def verify_draw(certificate_path: str, tickets_path: str, addenda_path: str | None) -> int:
    """Prints whether the certificate's draw, with its addenda, is what the ticket list gives."""
    from conversations.draw import verify

    with open(certificate_path, encoding="utf-8") as certificate_file:
        certificate = json.load(certificate_file)
    with open(tickets_path, encoding="ascii") as tickets_file:
        tickets = [line.strip() for line in tickets_file if line.strip()]
    addenda = []
    if addenda_path:
        with open(addenda_path, encoding="utf-8") as addenda_file:
            addenda = json.load(addenda_file)
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


async def admin_file(settings: Settings, command: str) -> bytes | None:
    """The CSV export, or the ticket list the draw froze (None before any draw)."""
    from bot.app import open_migrated_store, utc_now
    from conversations.admin import export_csv
    from conversations.draw import ticket_list
    from storage.sqlite_admin import SqliteAdminStore

    store = await open_migrated_store(settings, utc_now)
    try:
        if command == "export":
            content = export_csv(await store.all_participants())
        else:
            record = await SqliteAdminStore(store).draw()
            if record is None or not record.tickets:
                return None
            content = ticket_list(record.tickets).encode("ascii")
    finally:
        await store.close()
    return content


if __name__ == "__main__":
    raise SystemExit(main())
