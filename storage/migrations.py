"""The schema, as ordered, described steps. Each runs in one transaction; never edit a
released step, add a new one. SQL here is meant to run on SQLite and PostgreSQL alike."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS = (
    Migration(
        1,
        "participants with their friends and consents, processed updates, anonymous counts",
        (
            """CREATE TABLE participants (
                user_id BIGINT PRIMARY KEY,
                version INTEGER NOT NULL,
                language TEXT NOT NULL,
                step TEXT NOT NULL,
                paused SMALLINT NOT NULL,
                editing SMALLINT NOT NULL,
                consent_ticks TEXT NOT NULL,
                first_name TEXT,
                last_name TEXT,
                phone TEXT,
                email TEXT,
                pending_email TEXT,
                postcode TEXT,
                departement TEXT,
                area TEXT,
                question TEXT,
                referrer TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL,
                completed_at TEXT
            )""",
            "CREATE UNIQUE INDEX participants_phone_key ON participants (phone)",
            "CREATE UNIQUE INDEX participants_email_key ON participants (lower(email))",
            """CREATE TABLE friends (
                user_id BIGINT NOT NULL REFERENCES participants (user_id) ON DELETE CASCADE,
                position INTEGER NOT NULL,
                email TEXT NOT NULL,
                PRIMARY KEY (user_id, position)
            )""",
            """CREATE TABLE consents (
                user_id BIGINT NOT NULL REFERENCES participants (user_id) ON DELETE CASCADE,
                kind TEXT NOT NULL,
                version TEXT NOT NULL,
                given_at TEXT NOT NULL,
                PRIMARY KEY (user_id, kind, version)
            )""",
            """CREATE TABLE processed_updates (
                update_id BIGINT PRIMARY KEY,
                processed_at TEXT NOT NULL
            )""",
            "CREATE INDEX processed_updates_time ON processed_updates (processed_at)",
            """CREATE TABLE anonymous_counts (
                name TEXT PRIMARY KEY,
                value INTEGER NOT NULL
            )""",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version
