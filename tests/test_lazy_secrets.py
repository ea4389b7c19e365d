"""Secrets are drawn from the OS only by the steps that use them."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from bot.service import LazySecrets
from bot.settings import Settings
from tests.telegram_fakes import FakeBotApi, Updates, running_bot
from tests.test_telegram import signup_updates


def test_each_secret_is_drawn_when_first_read_and_then_kept() -> None:
    fresh = LazySecrets()
    assert vars(fresh) == {}
    token = fresh.token
    assert vars(fresh) == {"token": token} and fresh.token == token
    assert len(fresh.code) == 6 and fresh.code.isdigit()
    assert len(fresh.ticket) == 10 and fresh.referral_code


async def test_steps_that_use_no_secret_draw_none(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    drawn: list[str] = []
    for name in ("token_urlsafe", "randbelow", "choice"):
        real = getattr(secrets, name)

        def counting(*args: object, _real: object = real, _name: str = name) -> object:
            drawn.append(_name)
            return _real(*args)  # type: ignore[operator]

        monkeypatch.setattr(secrets, name, counting)
    api, updates = FakeBotApi(), Updates()
    user = Updates.user(4242)
    steps = signup_updates(updates, user)
    async with running_bot(settings.replace(mail_outbox_dir=str(tmp_path)), api) as bot:
        await bot.feed(*steps[:-1])  # everything before the summary's confirmation
        assert drawn == []
        await bot.feed(steps[-1])
    # Completing draws the confirmation's token and code and a referral code; the ticket
    # waits for the confirmed address.
    assert sorted(drawn) == ["randbelow", "token_urlsafe", "token_urlsafe"]
    assert any(text.startswith("🎉 Merci") for text in api.texts_to(4242))
