from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.settings import Settings
from bot.texts import load_catalogue
from conversations.catalogue import Catalogue
from conversations.model import Profile
from conversations.policy import Context, Secrets

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
SECRETS = Secrets(
    token="Tok3n-for_the-tests-22", code="123456", referral_code="REFcode1", ticket="TKT0000001"
)


# Read from the environment by the bot: none of the caller's may reach a test.
CALLER_SETTINGS = {field.name.upper() for field in fields(Settings)} | {"COFFEEBOT_ENV_FILE"}


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test runs in its own folder with none of the caller's bot settings, so that an
    exported SMTP_URL sends no real mail and nothing lands in the working tree."""
    for name in CALLER_SETTINGS & set(os.environ):
        monkeypatch.delenv(name)
    monkeypatch.setenv("COFFEEBOT_ENV_FILE", str(tmp_path / "no.env"))
    monkeypatch.setenv("MAIL_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        telegram_bot_token="123456:TEST",
        database_url=f"sqlite:///{tmp_path / 'coffeebot.db'}",
        mail_outbox_dir=str(tmp_path / "outbox"),
        telegram_max_messages_per_second=10_000,
        # Tests type far faster than people; the flood test sets its own limit.
        flood_max_messages=1_000,
    )


@pytest.fixture
def texts(settings: Settings) -> Catalogue:
    return load_catalogue(settings)


@pytest.fixture
def ctx(settings: Settings, texts: Catalogue) -> Context:
    profile = Profile("Zoé", "Martin", "fr")
    return Context(
        NOW,
        profile,
        texts,
        settings.limits,
        settings.travel,
        SECRETS,
        "coffee_test_bot",
        calendar=settings.calendar,
        zone=settings.zone,
    )
