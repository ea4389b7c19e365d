"""Settings from the environment (and an optional .env file): every name and limit the bot uses."""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from email.utils import parseaddr
from enum import StrEnum
from typing import Any, get_type_hints
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from conversations.announcements import TELEGRAM_MAX_LENGTH
from conversations.draw import BeaconSource
from conversations.expenses import ExpenseRules
from conversations.model import Area, Travel
from conversations.phases import Calendar, SilencePeriod
from conversations.policy import DEFAULT_TRAVEL, Limits
from conversations.retention import RetentionPolicy
from conversations.validators import TAG_IGNORING_PROVIDERS


class SettingsError(ValueError):
    pass


class HttpClient(StrEnum):
    """The library python-telegram-bot calls the Bot API with."""

    AIOHTTP = "aiohttp"
    HTTPX = "httpx"


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
    # The cap for travel the campaign books itself (Corsica, overseas).
    travel_arranged_max_eur: int = 700
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
    # aiohttp costs about a fifth of httpx's CPU per call; httpx is python-telegram-bot's own.
    telegram_http_client: HttpClient = HttpClient.AIOHTTP
    # Seconds a Bot API call may take for each phase; uploads get the longer write timeout.
    telegram_read_timeout_seconds: float = 5.0
    telegram_write_timeout_seconds: float = 5.0
    telegram_connect_timeout_seconds: float = 5.0
    telegram_pool_timeout_seconds: float = 1.0
    telegram_media_write_timeout_seconds: float = 20.0
    # How often a message refused with 429 (flood control) is sent again after the wait asked.
    telegram_max_retries: int = 5
    # Telegram redelivers an update for at most a day; processed ids are kept this long.
    update_dedup_hours: int = 48
    sqlite_busy_timeout_ms: int = 5000
    # Allocations between two collections of the young generation (Python's default: 700).
    gc_young_threshold: int = 50_000
    # Commits between two WAL checkpoints, which run on their own thread (about 4 pages each).
    sqlite_checkpoint_every_commits: int = 250
    # PostgreSQL: connections each process keeps open to the server.
    database_pool_size: int = 10
    # An /export larger than this is sent gzipped (Telegram takes documents up to 50 MB).
    export_document_max_bytes: int = 45_000_000
    confirmation_valid_days: int = 7
    confirmation_sends_per_hour: int = 3
    code_attempts_per_hour: int = 5
    # Confirmation emails one mailbox may receive in a day, whichever accounts ask for them
    # (counted by a keyed hash, kept through erasures).
    confirmation_emails_per_address_per_day: int = 5
    # Erasures of a completed signup after which the same Telegram account may not sign up
    # again until a week has passed since the first of them; the erasure itself always runs.
    erasures_per_week: int = 2
    # All the emails the bot may send in an hour: past it, sending pauses until the hour's
    # end and the admins are told once.
    emails_per_hour: int = 1000
    # Domains (and addresses) of the campaign's own, refused as friends besides MAIL_FROM's
    # domain and the CONTROLLER_EMAIL and DPO_CONTACT addresses. Comma-separated.
    campaign_email_domains: tuple[str, ...] = ()
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
    # Messages the Telegram outbox (draw results, reminders) sends: under Telegram's 30 a
    # second in all, leaving room for the replies to people who are writing.
    telegram_outbox_messages_per_second: float = 20.0
    telegram_outbox_batch_size: int = 100
    telegram_outbox_max_attempts: int = 6
    telegram_outbox_retry_base_seconds: float = 30.0
    telegram_outbox_poll_seconds: float = 5.0
    # The key of every keyed hash (addresses, confirmation codes and links), never kept in the
    # database: this value when set (ADDRESS_HASH_KEY, its former name, is read too), else the
    # key file, created at first start (mode 0600) beside a SQLite database, or `coffeebot.key`
    # in the working directory for PostgreSQL.
    secret_key: str | None = None
    secret_key_file: str | None = None
    reserves: int = 5
    # The most winners and reserves one /draw may ask for.
    draw_max_places: int = 100
    winner_response_hours: int = 72
    # A winner who has not answered is reminded this long before the deadline.
    winner_reminder_hours: int = 24
    # Unset: required as soon as ADMIN_IDS names two or more people.
    draw_requires_second_admin: bool | None = None
    # The draw's public randomness: a drand round fetched from BEACON_URL, or (manual) a value
    # published after the freeze that one admin pastes and another confirms.
    beacon: BeaconSource = BeaconSource.DRAND
    beacon_url: str = "https://api.drand.sh"
    # The beacon is the first value published at least this long after the list is frozen.
    beacon_delay_seconds: int = 60
    beacon_timeout_seconds: float = 10.0
    beacon_value_max_length: int = 200
    # Every date shown to people is written in this zone; dates below without an offset are
    # read in it.
    meeting_timezone: str = "Europe/Paris"
    # The operation's calendar, in ISO 8601 (2027-03-15T20:00, or with an offset); unset: no
    # such boundary.
    operation_opens_at: str | None = None
    entries_close_at: str | None = None
    draw_announced_at: str | None = None
    operation_ends_at: str | None = None
    # Electoral silence, comma-separated start/end pairs: 2027-04-09T00:00/2027-04-11T20:00,…
    silence_periods: str | None = None
    # How often deadlines and the meeting's reminder are checked.
    draw_check_seconds: float = 60.0
    # Lines in one /questions, /journal or /gagnants answer.
    admin_list_limit: int = 50
    # The longest message an admin's /annonce may send, in Telegram's characters (UTF-16 units,
    # an emoji counts two); at most 4096, Telegram's own limit.
    announcement_max_length: int = 4096
    # Webhook mode (`coffeebot webhook`) and the bot's small HTTP server (webhook, /healthz,
    # one-click unsubscribe). host:port it listens on; TLS is the reverse proxy's job.
    webhook_listen: str = "127.0.0.1:8080"
    webhook_path: str = "/telegram"
    # The https address Telegram posts updates to; unset: PUBLIC_URL followed by WEBHOOK_PATH.
    webhook_url: str | None = None
    # Telegram sends it back in every request: at least 32 random characters of A-Z a-z 0-9 _ -.
    webhook_secret: str | None = None
    # Telegram's simultaneous requests to the webhook (1 to 100).
    webhook_max_connections: int = 40
    # Updates are a few kilobytes; a larger body is refused (413) before it is read.
    webhook_max_body_bytes: int = 262_144
    # On SIGTERM, how long the requests in flight may take to finish.
    webhook_shutdown_seconds: float = 20.0
    # Replicas serving the bot together (on one PostgreSQL database): each takes this share of
    # TELEGRAM_MAX_MESSAGES_PER_SECOND and TELEGRAM_OUTBOX_MESSAGES_PER_SECOND, so that together
    # they stay under Telegram's limit.
    webhook_replicas: int = 1
    # How often each replica tries for the lead of the periodic jobs (and the leader checks it
    # still holds it): the longest a dead leader's jobs wait for another replica.
    leader_check_seconds: float = 10.0
    # The bot's public https address, e.g. https://cafe.example.org: when set, emails carry a
    # one-click unsubscribe link to it (RFC 8058), served beside polling too.
    public_url: str | None = None
    # The data controller, as the privacy notice, the rules and every email's footer name it
    # (GDPR art. 13 and 14): set the real ones before opening.
    controller_name: str = "Association de financement de la campagne de Camille Dupont"
    controller_address: str = "1 rue de l’Exemple, 75001 Paris, France"
    # Where anyone, with or without Telegram, exercises their rights; friends who were invited
    # included.
    controller_email: str = "donnees@campagne.example"
    dpo_contact: str = "dpo@campagne.example"
    # The processors the notice names; the notice says they process the data in the EU.
    mail_provider: str = "Exemple Courriel SAS (France)"
    hosting_provider: str = "Exemple Hébergement SAS (France)"
    # Retention, as the texts state it: a signup never completed is erased after this many days
    # without activity, everything else this many days after OPERATION_ENDS_AT.
    retention_incomplete_days: int = 30
    retention_after_end_days: int = 90
    # The mandataire's expense lines are accounting records of the campaign account (Code
    # électoral, art. L52-12): kept ten years, the period of Code de commerce art. L123-22 for
    # accounting records and their vouchers; the campaign's accountant may set another.
    expenses_retention_years: int = 10
    # How often the bot purges what the retention settings say is due (`coffeebot purge` does
    # it by hand); a restart starts the wait again.
    purge_every_hours: float = 24.0
    # Travel expenses: a receipt's file (photo or PDF) is refused above this size (Telegram
    # lets bots download 20 MB at most); receipts per winner; the amount of one receipt above
    # which it is taken as a typing mistake.
    expense_max_file_bytes: int = 20_000_000
    expense_max_receipts: int = 10
    expense_amount_max_eur: int = 2000
    # Unset: only Telegram's file id and the file's SHA-256 are kept. Set: each receipt is also
    # saved there (mode 0600), named by its hash.
    expense_files_dir: str | None = None
    expense_reference_max_length: int = 100
    expense_reason_max_length: int = 300
    # A receipt's download from Telegram (up to 20 MB) may take this long.
    expense_download_timeout_seconds: float = 60.0
    # The same payment again within this many minutes, without a reference, is a double tap.
    expense_repeat_minutes: int = 10
    # The names as English texts show them; unset: CANDIDATE_NAME and CAMPAIGN_NAME.
    candidate_name_en: str | None = None
    campaign_name_en: str | None = None
    # Mail providers that deliver local+tag@ to local@ (and Gmail, dots aside): one mailbox,
    # one key. Comma-separated; * stands for any ending (hotmail.*).
    address_tag_providers: tuple[str, ...] = TAG_IGNORING_PROVIDERS

    def __post_init__(self) -> None:
        """Refuse to start with a calendar that does not hold, a limit Telegram would refuse,
        or replicas that cannot share, naming the setting."""
        if self.webhook_replicas < 1:
            raise SettingsError("WEBHOOK_REPLICAS must be 1 or more")
        if self.leader_check_seconds <= 0:
            raise SettingsError("LEADER_CHECK_SECONDS must be above 0")
        problems = self.calendar.problems()
        if problems:
            name, problem = problems[0]
            raise SettingsError(f"{name} {problem}")
        # 0 would erase signups while people fill them in, erase the accounts' lines with the
        # rest, or run the purge without pause.
        for name, value in (
            ("RETENTION_INCOMPLETE_DAYS", self.retention_incomplete_days),
            ("EXPENSES_RETENTION_YEARS", self.expenses_retention_years),
            ("PURGE_EVERY_HOURS", self.purge_every_hours),
        ):
            if value <= 0:
                raise SettingsError(f"{name} must be more than 0")
        if not 0 < self.announcement_max_length <= TELEGRAM_MAX_LENGTH:
            raise SettingsError(f"ANNOUNCEMENT_MAX_LENGTH must be 1 to {TELEGRAM_MAX_LENGTH}")

    @property
    def zone(self) -> ZoneInfo:
        try:
            return ZoneInfo(self.meeting_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise SettingsError(
                f"MEETING_TIMEZONE has an invalid value: {self.meeting_timezone!r}"
            ) from None

    @property
    def calendar(self) -> Calendar:
        return Calendar(
            opens_at=self._moment("OPERATION_OPENS_AT", self.operation_opens_at),
            closes_at=self._moment("ENTRIES_CLOSE_AT", self.entries_close_at),
            draw_announced_at=self._moment("DRAW_ANNOUNCED_AT", self.draw_announced_at),
            ends_at=self._moment("OPERATION_ENDS_AT", self.operation_ends_at),
            silences=tuple(
                SilencePeriod(*self._period(part))
                for part in (self.silence_periods or "").split(",")
                if part.strip()
            ),
        )

    def _moment(self, name: str, raw: str | None) -> datetime | None:
        if raw is None or not raw.strip():
            return None
        try:
            moment = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise SettingsError(
                f"{name} has an invalid value: {raw!r} (write it as 2027-03-15T20:00)"
            ) from None
        return moment if moment.tzinfo else moment.replace(tzinfo=self.zone)

    def _period(self, raw: str) -> tuple[datetime, datetime]:
        start, separator, end = raw.strip().partition("/")
        first = self._moment("SILENCE_PERIODS", start)
        last = self._moment("SILENCE_PERIODS", end)
        if not separator or first is None or last is None:
            raise SettingsError(
                f"SILENCE_PERIODS has an invalid period: {raw.strip()!r}"
                " (write start/end, e.g. 2027-04-09T00:00/2027-04-11T20:00)"
            )
        return first, last

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for field in fields(cls):
            raw = environ.get(field.name.upper())
            if raw is not None and raw.strip() != "":
                values[field.name] = _parse(field.name.upper(), raw.strip(), hints[field.name])
        former = environ.get("ADDRESS_HASH_KEY", "").strip()
        if former and "secret_key" not in values:
            values["secret_key"] = former
        return cls(**values)

    @property
    def telegram_rate_per_replica(self) -> float:
        """This replica's share of Telegram's overall limit on the bot's messages."""
        return self.telegram_max_messages_per_second / self.webhook_replicas

    @property
    def telegram_outbox_rate_per_replica(self) -> float:
        return self.telegram_outbox_messages_per_second / self.webhook_replicas

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
            confirmation_emails_per_address_per_day=self.confirmation_emails_per_address_per_day,
            erasures_per_week=self.erasures_per_week,
            address_tag_providers=self.address_tag_providers,
            campaign_addresses=self.campaign_addresses,
        )

    @property
    def campaign_addresses(self) -> frozenset[str]:
        """The campaign's own domains and addresses, which no friend's address may be."""
        sender = parseaddr(self.mail_from)[1]
        # The sender's whole domain is the campaign's; the controller and the DPO may write
        # from a firm's or a provider's domain, so only their own addresses are refused.
        own = {sender, self.controller_email, self.dpo_contact}
        addresses = {address for address in own if "@" in address}
        domains = {sender.rpartition("@")[2]} if "@" in sender else set()
        return frozenset(
            part.casefold() for part in (*domains, *addresses, *self.campaign_email_domains)
        )

    @property
    def retention(self) -> RetentionPolicy:
        return RetentionPolicy(
            incomplete_days=self.retention_incomplete_days,
            after_end_days=self.retention_after_end_days,
            expenses_years=self.expenses_retention_years,
        )

    @property
    def second_admin_required(self) -> bool:
        if self.draw_requires_second_admin is not None:
            return self.draw_requires_second_admin
        return len(self.admin_ids) >= 2

    @property
    def expense_rules(self) -> ExpenseRules:
        return ExpenseRules(
            train_max_eur=self.travel_max_eur,
            arranged_max_eur=self.travel_arranged_max_eur,
            amount_max_eur=self.expense_amount_max_eur,
            max_receipts=self.expense_max_receipts,
            receipt_max_bytes=self.expense_max_file_bytes,
            reference_max_length=self.expense_reference_max_length,
            reason_max_length=self.expense_reason_max_length,
            repeat_window=timedelta(minutes=self.expense_repeat_minutes),
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
        if kind == tuple[str, ...]:
            return tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"{name} has an invalid value: {raw!r}") from None
    return raw
