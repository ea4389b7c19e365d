"""Settings from the environment (and an optional .env file): every name and limit the bot uses."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from enum import StrEnum
from typing import Any, get_type_hints

from conversations.model import Area
from conversations.policy import DEFAULT_TRAVEL, Limits, Travel


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    """Each field is read from the environment variable of the same name in upper case."""

    telegram_bot_token: str | None = None
    # The bot's @username, for links in emails; asked from Telegram (getMe) when unset.
    telegram_bot_username: str | None = None
    # Point this at a local Bot API server, e.g. http://127.0.0.1:8081/bot
    telegram_api_base_url: str = "https://api.telegram.org/bot"
    # At start, how long to keep trying an unreachable Bot API before giving up.
    telegram_start_timeout_seconds: float = 300.0
    # Longest wait between two attempts to reach an unreachable Bot API (the wait doubles).
    telegram_retry_max_seconds: float = 30.0
    admin_ids: frozenset[int] = frozenset()
    database_url: str = "sqlite:///coffeebot.db"
    default_language: str = "fr"
    candidate_name: str = "Camille Dupont"
    campaign_name: str = "L'équipe de campagne de Camille Dupont"
    winners: int = 5
    travel_max_eur: int = 200
    travel_paris: Travel = DEFAULT_TRAVEL[Area.PARIS]
    travel_ile_de_france: Travel = DEFAULT_TRAVEL[Area.ILE_DE_FRANCE]
    travel_province: Travel = DEFAULT_TRAVEL[Area.PROVINCE]
    travel_corsica: Travel = DEFAULT_TRAVEL[Area.CORSICA]
    travel_overseas: Travel = DEFAULT_TRAVEL[Area.OVERSEAS]
    name_max_length: int = 60
    question_max_length: int = 500
    max_friends: int = 3
    message_max_length: int = 1000
    email_check_deliverability: bool = False
    # A person sending more than this many messages in the window is muted for a while.
    flood_max_messages: int = 20
    flood_window_seconds: float = 10.0
    flood_mute_seconds: float = 30.0
    max_concurrent_updates: int = 256
    # Telegram's own limit on a bot's messages; raise it only against a local test server.
    telegram_max_messages_per_second: float = 30.0
    # How often a message refused with 429 (flood control) is sent again after the wait asked.
    telegram_max_retries: int = 5
    # Telegram redelivers an update for at most a day; processed ids are kept this long.
    update_dedup_hours: int = 48
    sqlite_busy_timeout_ms: int = 5000
    confirmation_valid_days: int = 7
    confirmation_sends_per_hour: int = 3
    code_attempts_per_hour: int = 5
    # smtp://user:password@host:587 (STARTTLS) or smtps://user:password@host:465 (TLS);
    # unset: emails are written as .eml files into MAIL_OUTBOX_DIR.
    smtp_url: str | None = None
    smtp_timeout_seconds: float = 30.0
    mail_from: str = "Camille Dupont <cafe@campagne.example>"
    mail_outbox_dir: str = "outbox"
    outbox_batch_size: int = 100
    outbox_max_attempts: int = 6
    outbox_retry_base_seconds: float = 30.0
    outbox_poll_seconds: float = 5.0
    # Secret for the keyed hashes of invited addresses; kept in the database when unset.
    address_hash_key: str | None = None
    reserves: int = 5
    # The most winners and reserves one /draw may ask for.
    draw_max_places: int = 100
    winner_response_hours: int = 72
    draw_requires_second_admin: bool = False
    meeting_timezone: str = "Europe/Paris"
    # How often deadlines and the meeting's reminder are checked.
    draw_check_seconds: float = 60.0
    # Lines in one /questions, /journal or /gagnants answer.
    admin_list_limit: int = 50

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(field.name.upper())
            if raw is not None and raw.strip() != "":
                values[field.name] = _parse(field.name.upper(), raw.strip(), hints[field.name])
        return cls(**values)

    @property
    def limits(self) -> Limits:
        return Limits(
            name_max_length=self.name_max_length,
            question_max_length=self.question_max_length,
            max_friends=self.max_friends,
            message_max_length=self.message_max_length,
            check_deliverability=self.email_check_deliverability,
            confirmation_valid_for=timedelta(days=self.confirmation_valid_days),
            confirmation_sends_per_hour=self.confirmation_sends_per_hour,
            code_attempts_per_hour=self.code_attempts_per_hour,
        )

    @property
    def travel(self) -> dict[Area, Travel]:
        return {area: getattr(self, f"travel_{area}") for area in Area}

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


def _parse(name: str, raw: str, kind: Any) -> Any:
    if isinstance(kind, types.UnionType):  # `str | None`
        kind = next(arg for arg in kind.__args__ if arg is not type(None))
    try:
        if kind is bool:
            if raw.lower() not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                raise ValueError(raw)
            return raw.lower() in {"1", "true", "yes", "on"}
        if kind in (int, float):
            number = kind(raw)
            if number < 0:
                raise ValueError(raw)
            return number
        if isinstance(kind, type) and issubclass(kind, StrEnum):
            return kind(raw)
        if kind == frozenset[int]:
            return frozenset(int(part) for part in raw.replace(" ", "").split(",") if part)
    except ValueError:
        raise SettingsError(f"{name} has an invalid value: {raw!r}") from None
    return raw
