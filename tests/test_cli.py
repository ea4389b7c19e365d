"""The coffeebot command's help and its one-line answers to mistakes."""

from __future__ import annotations

import argparse
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from bot.cli import build_parser, main
from tests.test_console import coffeebot

SUBCOMMANDS = {
    "run", "console", "migrate", "draw", "export", "audit", "copy-db", "webhook", "purge",
    "expenses",
}  # fmt: skip


def every_parser() -> list[argparse.ArgumentParser]:
    found = [build_parser()]
    for parser in found:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                found += action.choices.values()
    return found


def test_the_help_lists_every_command_without_markup(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert all(f"    {name} " in shown for name in SUBCOMMANDS), shown
    assert "TELEGRAM_BOT_TOKEN" in shown and "With no command, coffeebot runs the bot." in shown


def test_every_command_and_option_has_help_and_none_has_backticks() -> None:
    parsers = every_parser()
    # draw has tickets, verify and page; audit has verify
    assert len(parsers) == 1 + len(SUBCOMMANDS) + 3 + 1
    for parser in parsers:
        assert "`" not in parser.format_help(), parser.prog
        for action in parser._actions:
            assert action.help, f"{parser.prog}: {action.dest} has no help"


def test_no_command_runs_the_bot(tmp_path: Path) -> None:
    result = coffeebot(tmp_path)  # no token: run's own answer, not a usage error
    assert result.returncode == 2
    assert result.stderr.startswith("TELEGRAM_BOT_TOKEN is not set.")


def test_draw_verify_names_a_missing_file_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "certificate.json").write_text("{}")
    result = coffeebot(tmp_path, "draw", "verify", "certificate.json", "tickets.txt")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "coffeebot: cannot read tickets.txt: No such file or directory\n"


def test_draw_verify_refuses_a_file_that_is_no_certificate_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "certificate.json").write_text("not json")
    (tmp_path / "tickets.txt").write_text("AAAA\n")
    result = coffeebot(tmp_path, "draw", "verify", "certificate.json", "tickets.txt")
    assert result.returncode == 2
    assert result.stderr.startswith("coffeebot: not a certificate and a ticket list: Expecting")
    assert result.stderr.count("\n") == 1


def test_an_unsupported_database_url_is_one_line(tmp_path: Path) -> None:
    url = {"DATABASE_URL": "mysql://cafe:s3cret@db.example/cafe"}
    result = coffeebot(tmp_path, "migrate", env=url)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("coffeebot: DATABASE_URL mysql://… is not supported")
    assert "s3cret" not in result.stderr


def test_an_unreachable_database_server_is_one_line(tmp_path: Path) -> None:
    url = {"DATABASE_URL": "postgresql://cafe:s3cret@127.0.0.1:1/cafe"}
    result = coffeebot(tmp_path, "migrate", env=url)
    assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("coffeebot: cannot reach PostgreSQL cafe on 127.0.0.1:1")
    assert "s3cret" not in result.stderr


def test_a_locked_database_is_one_line_for_every_command(tmp_path: Path) -> None:
    database = tmp_path / "console.db"
    with closing(sqlite3.connect(database, isolation_level=None)) as holder:
        holder.execute("BEGIN EXCLUSIVE")
        for command in (["migrate"], ["export"], ["console"]):
            result = coffeebot(tmp_path, *command, env={"SQLITE_BUSY_TIMEOUT_MS": "200"})
            assert result.returncode == 1, result.stderr
            assert result.stderr.splitlines()[-1] == (
                f"coffeebot: the database {database} is locked by another process"
                " (another coffeebot?); gave up after SQLITE_BUSY_TIMEOUT_MS=200"
            )
            assert "Traceback" not in result.stderr


def test_export_writes_where_it_is_told(tmp_path: Path) -> None:
    result = coffeebot(tmp_path, "export", "-o", str(tmp_path / "participants.csv"))
    assert result.returncode == 0, result.stderr
    [header] = (tmp_path / "participants.csv").read_text(encoding="utf-8-sig").splitlines()
    assert header.startswith("ticket;first_name;last_name;phone;email;")  # no one confirmed yet
    assert result.stdout == ""


def test_dates_out_of_order_stop_the_bot_in_one_line_naming_the_setting(tmp_path: Path) -> None:
    dates = {"OPERATION_OPENS_AT": "2027-03-20T10:00", "ENTRIES_CLOSE_AT": "2027-03-01T10:00"}
    result = coffeebot(tmp_path, "run", env={"TELEGRAM_BOT_TOKEN": "1:x", **dates})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == "coffeebot: ENTRIES_CLOSE_AT must come after OPERATION_OPENS_AT\n"
