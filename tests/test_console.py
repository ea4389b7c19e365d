"""The terminal adapter and the command line, run as a person would run them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.smtp_server import free_port

SIGNUP = [
    "/start", "1",           # take part
    "1", "2", "3", "4",      # tick the three consents, continue
    "1",                     # the first name offered from the profile
    "Martin",
    "/contact +33612345678",
    "zoe@gmial.com", "1",    # accept the fix to gmail.com
    "97400",
    "1", "ami@free.fr", "3", # add a friend, then continue
    "Et les transports en outre-mer ?",
    "8",                     # confirm
]  # fmt: skip


def coffeebot(
    tmp_path: Path, *arguments: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TELEGRAM_", "DATABASE_"))
    }
    environment |= {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'console.db'}",
        "COFFEEBOT_ENV_FILE": str(tmp_path / "none.env"),
    }
    environment |= env or {}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *arguments],
        input=stdin,
        capture_output=True,
        text=True,
        env=environment,
        cwd=tmp_path,
        timeout=60,
    )


def test_a_scripted_signup_through_stdin(tmp_path: Path) -> None:
    script = "\n".join([*SIGNUP, "/mesdonnees"]) + "\n"
    result = coffeebot(tmp_path, "console", "--user-id", "77", "--first-name", "Zoé", stdin=script)
    assert result.returncode == 0, result.stderr
    assert "🎉 Merci" in result.stdout
    document = result.stdout[result.stdout.index("{\n") : result.stdout.rindex("}") + 1]
    data = json.loads(document)
    assert data["profile"]["phone"] == "+33612345678"
    assert data["profile"]["email"] == "zoe@gmail.com"
    assert (data["profile"]["departement"], data["profile"]["area"]) == ("974", "overseas")
    assert data["friends_you_invited"] == ["ami@free.fr"]
    assert data["profile"]["question"] == "Et les transports en outre-mer ?"


def test_the_console_resumes_where_the_last_run_stopped(tmp_path: Path) -> None:
    first = coffeebot(
        tmp_path, "console", "--first-name", "Zoé", stdin="\n".join(SIGNUP[:9]) + "\n"
    )
    assert first.returncode == 0, first.stderr
    second = coffeebot(tmp_path, "console", "--language", "en", stdin="/start\n")
    assert "Étape 5/8" in second.stdout  # the language chosen the first time is kept


def test_english_and_buttons_by_label(tmp_path: Path) -> None:
    result = coffeebot(tmp_path, "console", "--language", "en", stdin="/start\n☕ I'm in\n/aide\n")
    assert "Step 1/8" in result.stdout and "/mydata" in result.stdout


def test_run_without_a_token_says_how_to_get_one(tmp_path: Path) -> None:
    result = coffeebot(tmp_path, "run")
    assert result.returncode != 0
    assert "@BotFather" in result.stderr and "coffeebot console" in result.stderr


def test_an_invalid_setting_is_named(tmp_path: Path) -> None:
    result = coffeebot(tmp_path, "console", env={"MAX_FRIENDS": "three"}, stdin="")
    assert result.returncode == 2 and "MAX_FRIENDS" in result.stderr


def test_migrate(tmp_path: Path) -> None:
    result = coffeebot(tmp_path, "migrate")
    from storage.migrations import LATEST_VERSION

    assert result.returncode == 0 and f"version {LATEST_VERSION}" in result.stdout


def test_a_banner_names_the_database_and_the_mail_folder_and_says_to_type_start(
    tmp_path: Path,
) -> None:
    result = coffeebot(tmp_path, "console", stdin="")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()[:2]
    assert first == (
        f"coffeebot console: database {tmp_path / 'console.db'},"
        f" emails written as .eml files into {tmp_path / 'outbox'}."
    )
    assert second.startswith("Type /start to begin;")


def test_the_banner_names_an_smtp_server_without_its_password(tmp_path: Path) -> None:
    server = f"smtp://cafe:s3cret-pw@127.0.0.1:{free_port()}"
    result = coffeebot(tmp_path, "console", stdin="", env={"SMTP_URL": server})
    assert "emails sent through the SMTP server 127.0.0.1." in result.stdout
    assert "s3cret" not in result.stdout + result.stderr


def test_numbered_choices_outlive_a_reply_without_buttons(tmp_path: Path) -> None:
    result = coffeebot(tmp_path, "console", stdin="/start\n/aide\n1\n")
    assert "Merci de répondre avec les boutons" not in result.stdout
    assert "Étape 1/8" in result.stdout  # "1" still pressed "I'm in" after /aide's answer


def test_a_new_session_shows_where_it_stopped_and_its_numbers_work_at_once(
    tmp_path: Path,
) -> None:
    coffeebot(tmp_path, "console", stdin="/start\n1\n")  # joined: the consents are asked
    second = coffeebot(tmp_path, "console", stdin="1\n")
    assert second.returncode == 0, second.stderr
    choices = re.findall(r"\[1\] (. J’accepte le règlement)", second.stdout)
    # shown again, then "1" ticked it
    assert choices == ["☐ J’accepte le règlement", "☑ J’accepte le règlement"]
    assert "Merci de répondre avec les boutons" not in second.stdout


def test_the_console_says_which_eml_file_the_confirmation_went_to(tmp_path: Path) -> None:
    result = coffeebot(tmp_path, "console", "--first-name", "Zoé", stdin="\n".join(SIGNUP) + "\n")
    notes = re.findall(
        r"✉ email written to (\S+\.eml): open it, or read it with cat", result.stdout
    )
    assert notes == [str(next((tmp_path / "outbox").glob("*.eml")))]
    assert result.stdout.index("Un e-mail de confirmation part") < result.stdout.index(notes[0])
    written = Path(notes[0]).read_text(encoding="utf-8")
    code = re.search(r"tapez ce code dans votre conversation avec le bot\u00a0: (\d{6})", written)
    assert code is not None  # readable as it is, no base64 to decode
