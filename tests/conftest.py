from __future__ import annotations

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


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        telegram_bot_token="123456:TEST",
        database_url=f"sqlite:///{tmp_path / 'coffeebot.db'}",
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
