"""The participants and their entries: one person's state, loaded and saved with the effects
of a step in one transaction, on any backend (storage/database.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

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
from storage.database import Database, Dialect, Statement

# The channel on which a committed step tells the mail senders of every process to look.
MAIL_CHANNEL = "coffeebot_mail"

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
_ALL_CONSENTS = (
    "SELECT kind, version, given_at, withdrawn_at FROM consents WHERE user_id = ?"
    " ORDER BY given_at, kind"
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
# `load_for_step`: the person's row joined to their entry, their friends, consents and draw
# place as JSON arrays, their confirmed referrals, and the operation's state, in one row even
# for someone unknown. Only the JSON functions differ between the backends.
_LOAD_TEMPLATE = (
    "SELECT {participant}, {entry},"
    " (SELECT {agg}(email{by_position}) FROM (SELECT email, position FROM friends"
    " WHERE user_id = ? ORDER BY position) AS f) AS friends,"
    " (SELECT {agg}({array}(kind, version, given_at){by_time}) FROM (SELECT kind, version,"
    " given_at FROM consents WHERE user_id = ? AND withdrawn_at IS NULL ORDER BY given_at, kind)"
    " AS c) AS consents,"
    " (SELECT {array}(role, rank - CASE WHEN role = 'reserve'"
    " THEN (SELECT winners FROM draws WHERE name = 'main') ELSE 0 END, status, travel)"
    " FROM draw_places WHERE user_id = ? LIMIT 1) AS place,"
    " (SELECT COUNT(*) FROM participants AS referred JOIN participants AS referrer"
    " ON referred.referrer = referrer.referral_code"
    " JOIN entries ON entries.user_id = referred.user_id WHERE referrer.user_id = ?) AS referrals,"
    " (SELECT entries_closed_at FROM operation WHERE name = 'main') AS entries_closed_at,"
    " (SELECT COUNT(*) FROM draws WHERE status = 'done') AS draws_done"
    " FROM (SELECT 1) AS one LEFT JOIN participants AS p ON p.user_id = ?"
    " LEFT JOIN entries AS e ON e.user_id = p.user_id"
)
_PLACE_FIELDS = ("role", "rank", "status", "travel")  # the place's JSON array
_LOAD_USES = 5  # the user id's placeholders in _LOAD_TEMPLATE
_LOAD_COLUMNS = {
    "participant": ", ".join(f"p.{name}" for name in _COLUMNS),
    "entry": ", ".join(f"e.{name} AS entry_{name}" for name in _ENTRY_COLUMNS),
}
# SQLite aggregates a sorted subquery's rows in order (it never flattens one into an
# aggregate); PostgreSQL is told the order (SQLite learnt ORDER BY in aggregates in 3.44 only).
_LOAD = {
    Dialect.SQLITE: _LOAD_TEMPLATE.format(
        agg="json_group_array", array="json_array", by_position="", by_time="", **_LOAD_COLUMNS
    ),
    Dialect.POSTGRESQL: _LOAD_TEMPLATE.format(
        agg="json_agg",
        array="json_build_array",
        by_position=" ORDER BY position",
        by_time=" ORDER BY given_at, kind",
        **_LOAD_COLUMNS,
    ),
}
_OPERATION = (
    "SELECT (SELECT entries_closed_at FROM operation WHERE name = 'main'),"
    " (SELECT COUNT(*) FROM draws WHERE status = 'done')"
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
    " attempts, next_attempt_at, created_at)"
    " SELECT ?, CAST(? AS BIGINT), 'invitation', ?, ?, ?, 'pending', 0, ?, ?"
    " WHERE NOT EXISTS (SELECT 1 FROM address_hashes WHERE hash = ?)"
    " ON CONFLICT (idempotency_key) DO NOTHING"
)
_HASHED = "INSERT INTO address_hashes VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
_CANCEL_INVITATION = (
    "UPDATE outbox SET status = 'cancelled', recipient = NULL, params = NULL"
    " WHERE idempotency_key = ? AND status = 'pending'"
)
_FORGET_FRIENDS = "DELETE FROM friends WHERE user_id = ? AND position >= ?"
_KEEP_FRIENDS = (
    "INSERT INTO friends VALUES {} ON CONFLICT (user_id, position)"
    " DO UPDATE SET email = excluded.email"
)
_PROCESSED = "INSERT INTO processed_updates (update_id, processed_at, replies) VALUES (?, ?, ?)"
_ERASURE_COUNT = (
    "INSERT INTO anonymous_counts (name, value)"
    " SELECT CASE WHEN completed_at IS NULL THEN 'erased.incomplete' ELSE 'erased.complete' END, 1"
    " FROM participants WHERE user_id = ? AND version = ?"
    " ON CONFLICT (name) DO UPDATE SET value = anonymous_counts.value + 1"
)


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


def _participant(
    row: Any,
    friends: Iterable[Any],
    consents: Iterable[Any],
    entry: Any | None,
    place: DrawPlace | None = None,
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
        referrals_confirmed=row["referrals"],
        draw_place=place,
    )


class Participants:
    """The participant store (storage/ports.py ParticipantStore) on any Database."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._address_key: bytes | None = None

    @asynccontextmanager
    async def serving(self, user_id: int) -> AsyncIterator[Participants]:
        """This store within one person's turn (Database.serving): read and written under the
        person's lock, committed at the block's end."""
        async with self._database.serving(user_id) as database:
            if database is self._database:
                yield self
                return
            held = Participants(database)
            held._address_key = self._address_key
            yield held

    async def use_address_key(self, configured: str | None) -> None:
        """Key the address hashes with the configured secret, or with one kept in the database."""
        if configured:
            self._address_key = configured.encode()
            return
        keep = "INSERT INTO secrets VALUES ('address_hash_key', ?) ON CONFLICT DO NOTHING"
        await self._database.run([(keep, (secrets.token_hex(32),))])
        rows = await self._database.fetch(
            "SELECT value FROM secrets WHERE name = 'address_hash_key'"
        )
        self._address_key = rows[0][0].encode()

    def address_hash(self, address: str) -> str:
        assert self._address_key is not None, "use_address_key() first"
        return address_hash(self._address_key, address)

    async def load(self, user_id: int) -> Participant | None:
        return (await self.load_for_step(user_id))[0]

    async def load_for_step(self, user_id: int) -> tuple[Participant | None, OperationState]:
        """One person's state and the operation's, in one query (one round trip to a server)."""
        sql = _LOAD[self._database.dialect]
        ((row,),) = await self._database.read([(sql, (user_id,) * _LOAD_USES)])
        operation = OperationState(
            closed_at=_parse_time(row["entries_closed_at"]), drawn=row["draws_done"] > 0
        )
        if row["user_id"] is None:
            return None, operation
        entry = (
            {name: row[f"entry_{name}"] for name in _ENTRY_COLUMNS}
            if row["entry_entered_at"] is not None
            else None
        )
        friends = [(email,) for email in json.loads(row["friends"] or "[]")]
        consents = json.loads(row["consents"] or "[]")
        place = None
        if row["place"]:
            place = _place(dict(zip(_PLACE_FIELDS, json.loads(row["place"]), strict=True)))
        return _participant(row, friends, consents, entry, place), operation

    async def operation(self) -> OperationState:
        ((closed_at, done),) = (await self._database.read([(_OPERATION, ())]))[0]
        return OperationState(closed_at=_parse_time(closed_at), drawn=done > 0)

    async def close_entries(self, now: datetime) -> None:
        """Close entries now, for good, unless they were closed already."""
        await self._database.run([close_entries_statement(now)])

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
        user_id = state.user_id
        if any(isinstance(effect, ErasePersonalData) for effect in effects):
            # Friends and consents go with the participant (ON DELETE CASCADE).
            key = (user_id, expected_version)
            statements += [
                (_ERASURE_COUNT, key),
                ("DELETE FROM participants WHERE user_id = ? AND version = ?", key),
            ]
            guarded = len(statements) - 1 if expected_version else None
            await self._database.run(statements, guarded, user_id, together=True)
            return 0
        version = expected_version + 1
        row = _row(state, version, now)
        if expected_version == 0:
            statements.append((_INSERT, row))
        else:
            statements.append((_UPDATE, (*row[1:], user_id, expected_version)))
        guarded = len(statements) - 1
        # Rows written once each, whatever the order, so that the save may run as one statement.
        statements.append((_FORGET_FRIENDS, (user_id, len(state.friends))))
        if state.friends:
            values = ", ".join(["(?, ?, ?)"] * len(state.friends))
            friends = [(user_id, n, email) for n, email in enumerate(state.friends)]
            statements.append((_KEEP_FRIENDS.format(values), [v for f in friends for v in f]))
        if state.entry is not None:
            statements.append((_SAVE_ENTRY, _entry_row(user_id, state.entry, now)))
        for effect in effects:
            statements += self.effect_statements(user_id, effect, now)
        if any(isinstance(effect, QueueEmail | InviteFriends) for effect in effects):
            statements += self.mail_queued()
        # Together (one round trip to a server): no statement here may read what another one
        # writes, nor two write the same row (Database.run).
        await self._database.run(statements, guarded, user_id, together=True)
        return version

    def mail_queued(self) -> list[Statement]:
        """Tells other processes' mail senders, at commit, that an email is waiting."""
        notify = self._database.notify(MAIL_CHANNEL)
        return [notify] if notify is not None else []

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
        await self._database.run([(_PROCESSED, (update_id, _time(now), replies))])

    async def forget_processed_before(self, moment: datetime) -> int:
        forget = ("DELETE FROM processed_updates WHERE processed_at < ?", (_time(moment),))
        return (await self._database.run([forget]))[0]

    async def export(self, user_id: int) -> dict[str, Any]:
        key = (user_id,)
        rows, friends, consents, entries = await self._database.read(
            [(_SELECT, key), (_FRIENDS, key), (_ALL_CONSENTS, key), (_ENTRY, key)]
        )
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
        rows = await self._database.fetch(
            "SELECT value FROM anonymous_counts WHERE name = ?", (name,)
        )
        return int(rows[0][0]) if rows else 0


def close_entries_statement(now: datetime) -> Statement:
    return (
        "INSERT INTO operation (name, entries_closed_at) VALUES ('main', ?)"
        " ON CONFLICT (name) DO NOTHING",
        (_time(now),),
    )
