"""`coffeebot webhook` and `coffeebot webhook set|delete|info` against the local Bot API fake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.cli import main
from bot.telegram.application import ALLOWED_UPDATES
from tests.bot_api_server import LocalBotApi
from tests.test_console import coffeebot
from tests.test_webhook import SECRET

URL = "https://cafe.example.org/telegram"


@pytest.fixture
async def api() -> AsyncIterator[LocalBotApi]:
    server = LocalBotApi()
    await server.start()
    yield server
    await server.stop()


async def run(
    api: LocalBotApi, tmp_path: Path, *arguments: str, **env: str
) -> tuple[int, str, str]:
    """The command in its own process, while this loop keeps answering as the Bot API."""
    environment = {
        "TELEGRAM_BOT_TOKEN": "123456:TEST",
        "TELEGRAM_API_BASE_URL": api.base_url,
        "WEBHOOK_SECRET": SECRET,
        **env,
    }
    done = await asyncio.to_thread(coffeebot, tmp_path, "webhook", *arguments, env=environment)
    return done.returncode, done.stdout, done.stderr


async def test_set_registers_url_secret_updates_and_connections_keeping_pending(
    api: LocalBotApi, tmp_path: Path
) -> None:
    await api.push({"update_id": 1, "message": {}})
    status, out, _ = await run(
        api, tmp_path, "set", PUBLIC_URL="https://cafe.example.org/", WEBHOOK_MAX_CONNECTIONS="7"
    )
    assert status == 0
    assert api.webhook["url"] == URL and api.webhook["secret_token"] == SECRET
    assert api.webhook["max_connections"] == 7
    assert api.webhook["allowed_updates"] == list(ALLOWED_UPDATES)
    assert not api.webhook.get("drop_pending_updates")
    assert f"webhook set: {URL}" in out and "pending updates: 1" in out and SECRET not in out


async def test_info_then_delete_and_dropping_only_when_asked(
    api: LocalBotApi, tmp_path: Path
) -> None:
    await api.push({"update_id": 1, "message": {}})
    assert (await run(api, tmp_path, "set", WEBHOOK_URL=URL))[0] == 0
    status, out, _ = await run(api, tmp_path, "info")
    assert status == 0 and f"url: {URL}" in out and "max connections: 40" in out
    status, out, _ = await run(api, tmp_path, "delete")
    assert status == 0 and not api.webhook and "pending updates: 1" in out
    status, out, _ = await run(api, tmp_path, "delete", "--drop-pending-updates")
    assert status == 0 and "pending updates: 0" in out


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"WEBHOOK_URL": URL, "WEBHOOK_SECRET": ""}, "WEBHOOK_SECRET is not set"),
        ({"WEBHOOK_URL": URL, "WEBHOOK_SECRET": "tooshort"}, "WEBHOOK_SECRET must be"),
        ({"WEBHOOK_URL": URL, "WEBHOOK_MAX_CONNECTIONS": "101"}, "WEBHOOK_MAX_CONNECTIONS must"),
        ({"WEBHOOK_URL": URL, "WEBHOOK_MAX_CONNECTIONS": "0"}, "WEBHOOK_MAX_CONNECTIONS must"),
        ({}, "WEBHOOK_URL is not set, nor PUBLIC_URL"),
        ({"PUBLIC_URL": "http://cafe.example.org"}, "PUBLIC_URL must start with https://"),
    ],
)
def test_set_refuses_a_setting_to_fix_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    said: str,
) -> None:
    status, out, err = in_process(monkeypatch, capsys, "set", env)
    assert (status, out) == (2, "") and err.startswith(f"coffeebot: {said}")
    assert err.count("\n") == 1 and "tooshort" not in err


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"WEBHOOK_SECRET": ""}, "WEBHOOK_SECRET is not set"),
        ({"WEBHOOK_SECRET": "x" * 40}, "WEBHOOK_SECRET must be"),
        ({"WEBHOOK_LISTEN": "8080"}, "WEBHOOK_LISTEN has an invalid value"),
        ({"WEBHOOK_PATH": "telegram"}, "WEBHOOK_PATH must start with /"),
    ],
)
def test_webhook_mode_refuses_to_start_without_a_good_secret(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    said: str,
) -> None:
    # The Bot API address answers nothing: the refusal comes before any call to it.
    status, out, err = in_process(monkeypatch, capsys, None, env)
    assert (status, out) == (2, "") and err.startswith(f"coffeebot: {said}")
    assert err.count("\n") == 1 and "x" * 40 not in err


def in_process(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    action: str | None,
    env: dict[str, str],
) -> tuple[int, str, str]:
    environment = {
        "TELEGRAM_BOT_TOKEN": "123456:TEST",
        "TELEGRAM_API_BASE_URL": "http://127.0.0.1:9/bot",
        "WEBHOOK_SECRET": SECRET,
        **env,
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    status = main(["webhook", *([action] if action else [])])
    captured = capsys.readouterr()
    return status, captured.out, captured.err
