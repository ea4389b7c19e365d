"""The participant store on SQLite: WAL, foreign keys, a busy timeout.

One connection serves the whole process. A step's transaction and `load` run on the event loop
thread, each in one synchronous call: in WAL mode with synchronous=NORMAL a commit appends to
the WAL without an fsync, so this costs tens of microseconds, where a hop to a worker thread per
statement cost more than the statement. Nothing awaits inside a transaction, so transactions
cannot interleave and no lock is needed for them. The fsync happens in WAL checkpoints, which
SQLite would otherwise run inside a commit (stalling the loop tens of milliseconds): the
connection's auto-checkpoint is off and `Checkpointer` runs them on its own thread and
connection.

Bulk and admin reads (`fetch`, `all_participants`, `export`, the outbox's) run on aiosqlite's
worker thread with the same connection, off the loop. They take no lock: callers serialise
each user's steps, so no transaction in progress on the connection touches the rows a read
asks for.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import sqlite3
from collections.abc import Awaitable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from conversations.model import (
    Action,
    Area,
    Availability,
    Confirmation,
    Consent,
    ConsentKind,
    DrawPlace,
    Effect,
    Entry,
    ErasePersonalData,
    InviteFriends,
    Participant,
    QueueEmail,
    RecordConsent,
    Step,
    SuppressAddress,
    Travel,
    WithdrawConsent,
)
from conversations.phases import OperationState
from storage.migrations import LATEST_VERSION, MIGRATIONS
from storage.ports import (
    ContactTaken,
    DuplicateUpdate,
    NewerSchemaError,
    OutboxEmail,
    StaleWrite,
)

_COLUMNS = (
    "user_id", "version", "language", "step", "paused", "editing", "consent_ticks",
    "first_name", "last_name", "phone", "email", "pending_email", "postcode", "departement",
    "area", "question", "referrer", "created_at", "updated_at", "completed_at",
    "confirmation_token_hash", "confirmation_code_hash", "confirmation_expires_at",
    "confirmation_address", "code_failures", "confirmation_sends", "referral_code",
    "friends_invited", "actions", "availability",
)  # fmt: skip
_INSERT = (
    f"INSERT INTO participants ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
)
_UPDATE = (
    f"UPDATE participants SET {', '.join(f'{name} = ?' for name in _COLUMNS[1:])}"
    " WHERE user_id = ? AND version = ?"
)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM participants WHERE user_id = ?"
_FRIENDS = "SELECT email FROM friends WHERE user_id = ? ORDER BY position"
_CONSENTS = (
    "SELECT kind, version, given_at FROM consents WHERE user_id = ? AND withdrawn_at IS NULL"
    " ORDER BY given_at, kind"
)
_ALL_CONSENTS = (
    "SELECT kind, version, given_at, withdrawn_at FROM consents WHERE user_id = ?"
    " ORDER BY given_at, kind"
)
_REFERRALS = (
    "SELECT COUNT(*) FROM participants AS referred JOIN participants AS referrer"
    " ON referred.referrer = referrer.referral_code"
    " JOIN entries ON entries.user_id = referred.user_id WHERE referrer.user_id = ?"
)
_ENTRY_COLUMNS = (
    "ticket", "email", "phone", "postcode", "departement", "area", "consents", "entered_at",
    "excluded_reason",
)  # fmt: skip
_ENTRY = f"SELECT {', '.join(_ENTRY_COLUMNS)} FROM entries WHERE user_id = ?"
# The person's own step never changes the ticket, the consents or an admin's exclusion.
_SAVE_ENTRY = (
    "INSERT INTO entries (user_id, ticket, email, phone, postcode, departement, area, consents,"
    " entered_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, phone = excluded.phone,"
    " postcode = excluded.postcode, departement = excluded.departement, area = excluded.area,"
    " updated_at = excluded.updated_at"
)
_OPERATION = (
    "SELECT (SELECT entries_closed_at FROM operation WHERE name = 'main'),"
    " (SELECT COUNT(*) FROM draws WHERE status = 'done')"
)
# A reserve's rank counts from 1 after the winners.
_PLACE = (
    "SELECT role, rank - CASE WHEN role = 'reserve'"
    " THEN (SELECT winners FROM draws WHERE name = 'main') ELSE 0 END AS rank, status, travel"
    " FROM draw_places WHERE user_id = ?"
)
_RECORD_CONSENT = (
    "INSERT INTO consents (user_id, kind, version, given_at, withdrawn_at)"
    " VALUES (?, ?, ?, ?, NULL)"
    " ON CONFLICT (user_id, kind, version)"
    " DO UPDATE SET given_at = excluded.given_at, withdrawn_at = NULL"
)
_WITHDRAW_CONSENT = (
    "UPDATE consents SET withdrawn_at = ? WHERE user_id = ? AND kind = ? AND withdrawn_at IS NULL"
)
_QUEUE = (
    "INSERT INTO outbox (idempotency_key, user_id, kind, recipient, language, params, status,"
    " attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)"
    " ON CONFLICT (idempotency_key) DO NOTHING"
)
# An invitation is queued only for an address nobody invited and nobody unsubscribed.
_QUEUE_INVITATION = (
    "INSERT INTO outbox (idempotency_key, user_id, kind, recipient, language, params, status,"
    " attempts, next_attempt_at, created_at) SELECT ?, ?, 'invitation', ?, ?, ?, 'pending', 0, ?, ?"
    " WHERE NOT EXISTS (SELECT 1 FROM address_hashes WHERE hash = ?)"
    " ON CONFLICT (idempotency_key) DO NOTHING"
)
_HASHED = "INSERT INTO address_hashes VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
_CANCEL_INVITATION = (
    "UPDATE outbox SET status = 'cancelled', recipient = NULL, params = NULL"
    " WHERE idempotency_key = ? AND status = 'pending'"
)
_PROCESSED = "INSERT INTO processed_updates (update_id, processed_at, replies) VALUES (?, ?, ?)"
_ERASURE_COUNT = (
    "INSERT INTO anonymous_counts (name, value)"
    " SELECT CASE WHEN completed_at IS NULL THEN 'erased.incomplete' ELSE 'erased.complete' END, 1"
    " FROM participants WHERE user_id = ? AND version = ?"
    " ON CONFLICT (name) DO UPDATE SET value = anonymous_counts.value + 1"
)

Statement = tuple[str, Sequence[Any]]
log = logging.getLogger(__name__)


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _times(values: tuple[datetime, ...]) -> str:
    return ",".join(_time(value) or "" for value in values)


def _parse_times(value: str) -> tuple[datetime, ...]:
    return tuple(datetime.fromisoformat(part) for part in value.split(",") if part)


def _words(values: frozenset[str]) -> str:
    return ",".join(sorted(values))


def _sent(key: str, now: datetime) -> Statement:
    return (
        "UPDATE outbox SET status = 'sent', sent_at = ?, attempts = attempts + 1,"
        " recipient = NULL, params = NULL, last_error = NULL WHERE idempotency_key = ?",
        (_time(now), key),
    )


def address_hash(key: bytes, address: str) -> str:
    """A keyed hash of an address: enough to recognise it, not to recover it."""
    return hmac.new(key, address.casefold().encode(), hashlib.sha256).hexdigest()[:32]


def _row(state: Participant, version: int, now: datetime) -> tuple[Any, ...]:
    pending = state.confirmation
    expires_at = pending.expires_at if pending else None
    return (
        state.user_id, version, state.language, str(state.step), int(state.paused),
        int(state.editing), _words(state.consent_ticks), state.first_name,
        state.last_name, state.phone, state.email, state.pending_email, state.postcode,
        state.departement, state.area and str(state.area), state.question, state.referrer,
        _time(state.created_at), _time(now), _time(state.completed_at),
        pending and pending.token_hash, pending and pending.code_hash,
        _time(expires_at), pending and pending.address,
        _times(state.code_failures), _times(state.confirmation_sends), state.referral_code,
        state.friends_invited, _words(state.actions), _words(state.availability),
    )  # fmt: skip


def _entry_row(user_id: int, entry: Entry, now: datetime) -> tuple[Any, ...]:
    consents = [
        {"kind": str(c.kind), "version": c.version, "given_at": _time(c.given_at)}
        for c in entry.consents
    ]
    return (
        user_id, entry.ticket, entry.email, entry.phone, entry.postcode, entry.departement,
        str(entry.area), json.dumps(consents), _time(entry.entered_at), _time(now),
    )  # fmt: skip


def _place(row: Any) -> DrawPlace:
    travel = Travel(row["travel"]) if row["travel"] else None
    return DrawPlace(row["role"], row["rank"], row["status"], travel)


def _entry(row: Any) -> Entry:
    return Entry(
        ticket=row["ticket"],
        email=row["email"],
        phone=row["phone"],
        postcode=row["postcode"],
        departement=row["departement"],
        area=Area(row["area"]),
        consents=tuple(
            Consent(ConsentKind(c["kind"]), c["version"], datetime.fromisoformat(c["given_at"]))
            for c in json.loads(row["consents"])
        ),
        entered_at=datetime.fromisoformat(row["entered_at"]),
        excluded_reason=row["excluded_reason"],
    )


def _conflict(error: sqlite3.IntegrityError) -> Exception:
    message = str(error)
    if "processed_updates" in message:
        return DuplicateUpdate()
    if "participants.phone" in message or "participants_phone_key" in message:
        return ContactTaken("phone")
    if "participants_email_key" in message or "entries_email_key" in message:
        return ContactTaken("email")
    if "participants.user_id" in message:
        return StaleWrite()
    return error


def _participant(
    row: Any, friends: Iterable[Any], consents: Iterable[Any], entry: Any | None
) -> Participant:
    expires_at = _parse_time(row["confirmation_expires_at"])
    return Participant(
        user_id=row["user_id"],
        language=row["language"],
        created_at=datetime.fromisoformat(row["created_at"]),
        step=Step(row["step"]),
        version=row["version"],
        paused=bool(row["paused"]),
        editing=bool(row["editing"]),
        consent_ticks=frozenset(
            ConsentKind(tick) for tick in row["consent_ticks"].split(",") if tick
        ),
        consents=tuple(
            Consent(ConsentKind(kind), version, datetime.fromisoformat(given_at))
            for kind, version, given_at in consents
        ),
        first_name=row["first_name"],
        last_name=row["last_name"],
        phone=row["phone"],
        email=row["email"],
        pending_email=row["pending_email"],
        postcode=row["postcode"],
        departement=row["departement"],
        area=Area(row["area"]) if row["area"] else None,
        friends=tuple(friend[0] for friend in friends),
        question=row["question"],
        referrer=row["referrer"],
        completed_at=_parse_time(row["completed_at"]),
        confirmation=Confirmation(
            row["confirmation_address"],
            row["confirmation_token_hash"],
            row["confirmation_code_hash"],
            expires_at,
        )
        if expires_at
        else None,
        entry=_entry(entry) if entry is not None else None,
        code_failures=_parse_times(row["code_failures"]),
        confirmation_sends=_parse_times(row["confirmation_sends"]),
        referral_code=row["referral_code"],
        friends_invited=row["friends_invited"],
        actions=frozenset(Action(a) for a in row["actions"].split(",") if a),
        availability=frozenset(Availability(a) for a in row["availability"].split(",") if a),
    )


class Checkpointer:
    """Copies the WAL into the database on a thread of its own, every `every_commits` commits.

    PASSIVE: it never waits for, nor blocks, the writer on the loop thread.
    """

    def __init__(self, path: str, every_commits: int) -> None:
        self._path = path
        self._every = every_commits
        self._commits = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        self._connection: sqlite3.Connection | None = None
        self._running: asyncio.Future[None] | None = None

    def committed(self) -> None:
        self._commits += 1
        if self._commits >= self._every and (self._running is None or self._running.done()):
            self._commits = 0
            self._running = asyncio.get_running_loop().run_in_executor(self._thread, self._run)
            self._running.add_done_callback(_checkpoint_done)

    def _run(self) -> None:
        if self._connection is None:
            self._connection = sqlite3.connect(self._path, check_same_thread=False)
        self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def close(self) -> None:
        if self._running is not None:
            await asyncio.wait([self._running])
        if self._connection is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._connection.close)
        self._thread.shutdown()


def _checkpoint_done(future: asyncio.Future[None]) -> None:
    # A failed checkpoint is retried at the next one; the WAL only grows meanwhile.
    if not future.cancelled() and future.exception() is not None:
        log.warning("WAL checkpoint failed: %s", future.exception())


class SqliteStore:
    def __init__(
        self, connection: aiosqlite.Connection, checkpointer: Checkpointer | None = None
    ) -> None:
        self._connection = connection
        # The same sqlite3 connection, used directly on the loop thread.
        self._db: sqlite3.Connection = connection._conn
        self._checkpointer = checkpointer
        self._lock = asyncio.Lock()
        self._address_key: bytes | None = None

    async def use_address_key(self, configured: str | None) -> None:
        """Key the address hashes with the configured secret, or with one kept in the database."""
        if configured:
            self._address_key = configured.encode()
            return
        keep = "INSERT INTO secrets VALUES ('address_hash_key', ?) ON CONFLICT DO NOTHING"
        await self._transaction([(keep, (secrets.token_hex(32),))])
        rows = await self._connection.execute_fetchall(
            "SELECT value FROM secrets WHERE name = 'address_hash_key'"
        )
        self._address_key = next(iter(rows))[0].encode()

    def address_hash(self, address: str) -> str:
        assert self._address_key is not None, "use_address_key() first"
        return address_hash(self._address_key, address)

    @classmethod
    async def open(
        cls, path: str, busy_timeout_ms: int = 5000, checkpoint_every_commits: int = 250
    ) -> SqliteStore:
        connection = await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)
        connection.row_factory = aiosqlite.Row
        checkpointer = None
        if path != ":memory:":
            await connection.execute("PRAGMA journal_mode = WAL")
            await connection.execute("PRAGMA wal_autocheckpoint = 0")
            checkpointer = Checkpointer(path, checkpoint_every_commits)
        # NORMAL in WAL mode: a committed step survives the process being killed;
        # only a power cut can lose the last few.
        await connection.execute("PRAGMA synchronous = NORMAL")
        await connection.execute("PRAGMA foreign_keys = ON")
        await connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        return cls(connection, checkpointer)

    async def close(self) -> None:
        if self._checkpointer is not None:
            await self._checkpointer.close()
        # The last connection to close checkpoints the whole WAL and removes it.
        await self._connection.close()

    async def schema_version(self) -> int:
        async with self._lock:
            return await self._schema_version()

    async def _schema_version(self) -> int:
        await self._connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        rows = await self._connection.execute_fetchall("SELECT MAX(version) FROM schema_migrations")
        value = next(iter(rows))[0]
        return int(value) if value is not None else 0

    async def migrate(self, now: datetime) -> list[str]:
        """Apply the missing migrations in order, each in its own transaction."""
        async with self._lock:
            current = await self._schema_version()
        if current > LATEST_VERSION:
            raise NewerSchemaError(
                f"the database is at schema version {current}, this bot knows up to "
                f"{LATEST_VERSION}: upgrade the bot rather than run an older one on it"
            )
        applied = []
        for migration in MIGRATIONS[current:]:
            record = (migration.version, migration.description, _time(now))
            statements: list[Statement] = [(sql, ()) for sql in migration.statements]
            await self._transaction(
                [*statements, ("INSERT INTO schema_migrations VALUES (?, ?, ?)", record)]
            )
            applied.append(f"{migration.version}: {migration.description}")
        return applied

    async def load(self, user_id: int) -> Participant | None:
        """One person's state, read on the loop thread: a few indexed lookups."""
        execute = self._db.execute
        row = execute(_SELECT, (user_id,)).fetchone()
        if row is None:
            return None
        friends = execute(_FRIENDS, (user_id,)).fetchall()
        consents = execute(_CONSENTS, (user_id,)).fetchall()
        entry = execute(_ENTRY, (user_id,)).fetchone()
        referrals = execute(_REFERRALS, (user_id,)).fetchone()[0]
        place = execute(_PLACE, (user_id,)).fetchone()
        return replace(
            _participant(row, friends, consents, entry),
            referrals_confirmed=referrals,
            draw_place=_place(place) if place else None,
        )

    async def operation(self) -> OperationState:
        # On the loop thread, like `load`: every step reads it.
        closed_at, done = self._db.execute(_OPERATION).fetchone()
        return OperationState(closed_at=_parse_time(closed_at), drawn=done > 0)

    async def close_entries(self, now: datetime) -> None:
        """Close entries now, for good, unless they were closed already."""
        await self._transaction(
            [
                (
                    "INSERT INTO operation (name, entries_closed_at) VALUES ('main', ?)"
                    " ON CONFLICT (name) DO NOTHING",
                    (_time(now),),
                )
            ]
        )

    async def all_participants(self) -> list[Participant]:
        """Every participant, for the admin tools; the referral and draw fields are not set."""
        rows, friends, consents, entries = await self._pipeline(
            self._connection.execute_fetchall(f"SELECT {', '.join(_COLUMNS)} FROM participants"),
            self._connection.execute_fetchall(
                "SELECT user_id, email FROM friends ORDER BY position"
            ),
            self._connection.execute_fetchall(
                "SELECT user_id, kind, version, given_at FROM consents WHERE withdrawn_at IS NULL"
                " ORDER BY given_at, kind"
            ),
            self._connection.execute_fetchall(
                f"SELECT user_id, {', '.join(_ENTRY_COLUMNS)} FROM entries"
            ),
        )
        for result in (rows, friends, consents, entries):
            if isinstance(result, BaseException):
                raise result
        entry_of = {entry["user_id"]: entry for entry in entries}
        friends_of: dict[int, list[Any]] = {}
        for friend in friends:
            friends_of.setdefault(friend[0], []).append(friend[1:])
        consents_of: dict[int, list[Any]] = {}
        for consent in consents:
            consents_of.setdefault(consent[0], []).append(consent[1:])
        return [
            _participant(
                row,
                friends_of.get(row["user_id"], []),
                consents_of.get(row["user_id"], []),
                entry_of.get(row["user_id"]),
            )
            for row in rows
        ]

    async def fetch(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """A read, for the other stores sharing this connection."""
        return list(await self._connection.execute_fetchall(sql, parameters))

    async def write(self, statements: Sequence[Statement], guarded: int | None = None) -> None:
        """A transaction, for the other stores sharing this connection."""
        await self._transaction(statements, guarded)

    async def save(
        self,
        state: Participant,
        expected_version: int,
        effects: Sequence[Effect],
        update_id: int | None,
        now: datetime,
        replies: str | None = None,
    ) -> int:
        statements: list[Statement] = []
        if update_id is not None:
            statements.append((_PROCESSED, (update_id, _time(now), replies)))
        if any(isinstance(effect, ErasePersonalData) for effect in effects):
            # Friends and consents go with the participant (ON DELETE CASCADE).
            key = (state.user_id, expected_version)
            statements += [
                (_ERASURE_COUNT, key),
                ("DELETE FROM participants WHERE user_id = ? AND version = ?", key),
            ]
            await self._transaction(
                statements, guarded=len(statements) - 1 if expected_version else None
            )
            return 0
        version = expected_version + 1
        row = _row(state, version, now)
        if expected_version == 0:
            statements.append((_INSERT, row))
        else:
            statements.append((_UPDATE, (*row[1:], state.user_id, expected_version)))
        guarded = len(statements) - 1
        statements.append(("DELETE FROM friends WHERE user_id = ?", (state.user_id,)))
        statements += [
            ("INSERT INTO friends VALUES (?, ?, ?)", (state.user_id, position, email))
            for position, email in enumerate(state.friends)
        ]
        if state.entry is not None:
            statements.append((_SAVE_ENTRY, _entry_row(state.user_id, state.entry, now)))
        for effect in effects:
            statements += self.effect_statements(state.user_id, effect, now)
        await self._transaction(statements, guarded)
        return version

    def effect_statements(self, user_id: int, effect: Effect, now: datetime) -> list[Statement]:
        """The statements that carry out an effect within the step's transaction."""
        at = _time(now)
        if isinstance(effect, RecordConsent):
            consent = effect.consent
            given = (user_id, str(consent.kind), consent.version, _time(consent.given_at))
            return [(_RECORD_CONSENT, given)]
        if isinstance(effect, WithdrawConsent):
            return [(_WITHDRAW_CONSENT, (_time(effect.withdrawn_at), user_id, str(effect.kind)))]
        if isinstance(effect, QueueEmail):
            params = json.dumps(dict(effect.params))
            values = (
                effect.key,
                user_id,
                effect.kind,
                effect.recipient,
                effect.language,
                params,
                at,
                at,
            )
            return [(_QUEUE, values)]
        if isinstance(effect, InviteFriends):
            statements: list[Statement] = []
            for address in effect.addresses:
                hashed = self.address_hash(address)
                params = json.dumps(
                    {
                        "first_name": effect.referrer_first_name,
                        "referral_code": effect.referral_code,
                        "address_hash": hashed,
                    }
                )
                key = f"invitation:{hashed}"
                invitation = (key, user_id, address, effect.language, params, at, at, hashed)
                statements += [(_QUEUE_INVITATION, invitation), (_HASHED, (hashed, "invited", at))]
            return statements
        if isinstance(effect, SuppressAddress):
            return [
                (_HASHED, (effect.address_hash, "unsubscribed", at)),
                (_CANCEL_INVITATION, (f"invitation:{effect.address_hash}",)),
            ]
        return []

    async def mark_processed(
        self, update_id: int, now: datetime, replies: str | None = None
    ) -> None:
        await self._transaction([(_PROCESSED, (update_id, _time(now), replies))])

    async def _transaction(
        self, statements: Sequence[Statement], guarded: int | None = None
    ) -> None:
        """Run statements in one transaction; the `guarded` one must change exactly one row.

        It runs to its end before this returns: nothing awaits in between, so a cancelled
        caller cannot leave it open.
        """
        self._commit(statements, guarded)

    def _commit(self, statements: Sequence[Statement], guarded: int | None) -> list[int]:
        """The transaction, synchronously on the calling thread; each statement's row count."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            counts = [db.execute(sql, parameters).rowcount for sql, parameters in statements]
            if guarded is not None and counts[guarded] != 1:
                raise StaleWrite()
            db.execute("COMMIT")
        except BaseException as error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if isinstance(error, sqlite3.IntegrityError):
                raise _conflict(error) from error
            raise
        if self._checkpointer is not None:
            self._checkpointer.committed()
        return counts

    async def _pipeline(self, *calls: Awaitable[Any]) -> list[Any]:
        """Queue calls on the connection's thread in this order and wait for them together."""
        return await asyncio.gather(*calls, return_exceptions=True)

    async def due(
        self, now: datetime, limit: int, only_kinds: Collection[str] | None = None
    ) -> list[OutboxEmail]:
        kinds = "" if only_kinds is None else f" AND kind IN ({', '.join('?' * len(only_kinds))})"
        rows = await self.fetch(
            "SELECT idempotency_key, kind, recipient, language, params, attempts"
            f" FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?{kinds}"
            " ORDER BY next_attempt_at LIMIT ?",
            (_time(now), *(only_kinds or ()), limit),
        )
        return [
            OutboxEmail(
                row["idempotency_key"],
                row["kind"],
                row["recipient"],
                row["language"],
                json.loads(row["params"]),
                row["attempts"],
            )
            for row in rows
        ]

    async def start_sending(self, key: str, now: datetime, sent_before: str | None) -> bool:
        statements: list[Statement] = []
        if sent_before is not None:
            statements.append(_sent(sent_before, now))
        statements.append(
            (
                "UPDATE outbox SET status = 'sending'"
                " WHERE idempotency_key = ? AND status = 'pending'",
                (key,),
            )
        )
        try:
            await self._transaction(statements, guarded=len(statements) - 1)
        except StaleWrite:
            return False
        return True

    async def mark_sent(self, key: str, now: datetime) -> None:
        await self._transaction([_sent(key, now)])

    async def retry_later(self, key: str, attempts: int, at: datetime, error: str) -> None:
        await self._transaction(
            [
                (
                    "UPDATE outbox SET status = 'pending', attempts = ?, next_attempt_at = ?,"
                    " last_error = ? WHERE idempotency_key = ?",
                    (attempts, _time(at), error[:500], key),
                )
            ]
        )

    async def mark_failed(self, key: str, attempts: int, error: str) -> None:
        await self._transaction(
            [
                (
                    "UPDATE outbox SET status = 'failed', attempts = ?, last_error = ?,"
                    " recipient = NULL, params = NULL WHERE idempotency_key = ?",
                    (attempts, error[:500], key),
                )
            ]
        )

    async def mark_interrupted(self) -> int:
        interrupted = (
            "UPDATE outbox SET status = 'interrupted', recipient = NULL, params = NULL,"
            " last_error = 'the bot stopped while sending' WHERE status = 'sending'"
        )
        return self._commit([(interrupted, ())], None)[0]

    async def outbox_counts(self) -> dict[str, int]:
        rows = await self._connection.execute_fetchall(
            "SELECT status, COUNT(*) FROM outbox GROUP BY status"
        )
        return {status: count for status, count in rows}

    async def forget_processed_before(self, moment: datetime) -> int:
        forget = ("DELETE FROM processed_updates WHERE processed_at < ?", (_time(moment),))
        return self._commit([forget], None)[0]

    async def export(self, user_id: int) -> dict[str, Any]:
        rows, friends, consents, entries = await self._pipeline(
            self._connection.execute_fetchall(_SELECT, (user_id,)),
            self._connection.execute_fetchall(_FRIENDS, (user_id,)),
            self._connection.execute_fetchall(_ALL_CONSENTS, (user_id,)),
            self._connection.execute_fetchall(_ENTRY, (user_id,)),
        )
        for result in (rows, friends, consents, entries):
            if isinstance(result, BaseException):
                raise result
        entry = dict(entries[0]) if entries else None
        if entry is not None:
            entry["consents"] = json.loads(entry["consents"])
        return {
            "telegram_user_id": user_id,
            "signup": dict(rows[0]) if rows else None,
            "entry": entry,
            "friends": [friend[0] for friend in friends],
            "consents": [dict(consent) for consent in consents],
        }

    async def count(self, name: str) -> int:
        rows = await self.fetch("SELECT value FROM anonymous_counts WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0
