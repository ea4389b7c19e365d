from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.settings import Settings
from bot.texts import load_catalogue
from conversations.catalogue import Catalogue
from conversations.model import Profile
from conversations.policy import Context

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        telegram_bot_token="123456:TEST",
        database_url=f"sqlite:///{tmp_path / 'coffeebot.db'}",
        telegram_max_messages_per_second=10_000,
    )


@pytest.fixture
def texts(settings: Settings) -> Catalogue:
    return load_catalogue(settings)


@pytest.fixture
def ctx(settings: Settings, texts: Catalogue) -> Context:
    return Context(NOW, Profile("Zoé", "Martin", "fr"), texts, settings.limits, settings.travel)
