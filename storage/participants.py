"""The participants and their entries: one person's state, loaded and saved with the effects
of a step in one transaction, on any backend (storage/database.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
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
    CountUse,
    DrawPlace,
    Effect,
    Entry,
    ErasePersonalData,
    InviteFriends,
    Participant,
    QueueEmail,
    Quota,
    RecordConsent,
    Step,
    SuppressAddress,
    Travel,
    WithdrawConsent,
)
from conversations.phases import OperationState
from conversations.quotas import Usage, Use, subjects_to_read
from conversations.validators import TAG_IGNORING_PROVIDERS, address_key
from storage.database import Database, Dialect, Statement
from storage.ports import ContactTaken
from storage.quotas import Quotas, use_of

# The channel on which a committed step tells the mail senders of every process to look.
MAIL_CHANNEL = "coffeebot_mail"

_COLUMNS = (
    "user_id", "version", "language", "step", "paused", "editing", "consent_ticks",
    "first_name", "last_name", "phone", "phone_verified", "email", "pending_email", "postcode",
    "departement", "area", "question", "referrer", "created_at", "updated_at", "completed_at",
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
# What /mesdonnees shows besides the profile: the rows about the person, in words.
_EMAILS = (
    "SELECT kind, recipient AS to_address, language, status, attempts, last_error,"
    " created_at, sent_at FROM outbox WHERE user_id = ? ORDER BY created_at, idempotency_key"
)
_MESSAGES = (
    "SELECT kind, text_key AS message, language, status, attempts, created_at, sent_at"
    " FROM telegram_outbox WHERE user_id = ? ORDER BY created_at, idempotency_key"
)
# A winner's travel expense, its receipts (amount, hash; not Telegram's file ids) and payments.
_OWN_EXPENSE = (
    "SELECT ticket, first_name, last_name, postcode, area, travel, step AS status,"
    " claimed_cents, claimed_at, opened_at, last_paid_at, refused_at FROM expenses"
    " WHERE user_id = ?"
)
_OWN_RECEIPTS = (
    "SELECT r.position, r.kind, r.size, r.sha256, r.amount_cents, r.received_at"
    " FROM expense_receipts AS r JOIN expenses AS x ON x.ticket = r.ticket"
    " WHERE x.user_id = ? ORDER BY r.position"
)
_OWN_PAYMENTS = (
    "SELECT p.seq, p.amount_cents, p.reference, p.paid_at, p.cancelled_at"
    " FROM expense_payments AS p"
    " JOIN expenses AS x ON x.ticket = p.ticket WHERE x.user_id = ? ORDER BY p.seq"
)
_BLOCKED = "SELECT blocked_at FROM telegram_blocked WHERE user_id = ?"
# An erased winner's expense stays for the campaign's accounts (a legal obligation, GDPR art.
# 17(3)(b)), linked to nobody's Telegram account.
# The expense stays for the accounts; the reason an admin typed refusing it (which may name
# someone) goes with the person, as its copy in the audit log's note does (_FORGET_NOTES).
_UNLINK_EXPENSE = "UPDATE expenses SET user_id = NULL, refusal_reason = NULL WHERE user_id = ?"
_OWN_PLACE = (
    "SELECT ticket, role, rank - CASE WHEN role = 'reserve'"
    " THEN (SELECT winners FROM draws WHERE name = 'main') ELSE 0 END AS rank_in_role,"
    " status, deadline, area AS area_at_the_draw, travel AS travel_at_the_draw, updated_at"
    " FROM draw_places WHERE user_id = ?"
)
_ADDENDA_ABOUT = "SELECT record FROM draw_addenda WHERE record LIKE ? ORDER BY seq"
# Entries written before the audit log had a ticket column name it in their details only.
_AUDIT_ABOUT = (
    "SELECT at, action, details, note FROM audit_log WHERE ticket = ? OR details LIKE ?"
    " ORDER BY at, seq"
)
# An admin's free text about the person's ticket goes with them; the chain keeps its digest.
_FORGET_NOTES = (
    "UPDATE audit_log SET note = NULL, note_salt = NULL WHERE note_salt IS NOT NULL AND ticket IN"
    " (SELECT ticket FROM entries WHERE user_id = ? UNION SELECT ticket FROM draw_places"
    " WHERE user_id = ?)"
)
# The person's own step never changes the ticket, the consents or an admin's exclusion.
_SAVE_ENTRY = (
    "INSERT INTO entries (user_id, ticket, email, phone, postcode, departement, area, consents,"
    " entered_at, updated_at, address_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (user_id) DO UPDATE SET email = excluded.email, phone = excluded.phone,"
    # Re-keyed only when the address changes: an entry left unkeyed at start because another
    # one has its mailbox (storage.key_entries), or keyed under other ADDRESS_TAG_PROVIDERS,
    # keeps its key, so that its owner's every step does not clash with the other entry.
    " address_key = CASE WHEN entries.email = excluded.email THEN entries.address_key"
    " ELSE excluded.address_key END,"
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
    " (SELECT COUNT(*) FROM draws WHERE status = 'done') AS draws_done,"
    " (SELECT COUNT(*) FROM telegram_blocked WHERE user_id = ?) AS blocked"
    " FROM (SELECT 1) AS one LEFT JOIN participants AS p ON p.user_id = ?"
    " LEFT JOIN entries AS e ON e.user_id = p.user_id"
)
_PLACE_FIELDS = ("role", "rank", "status", "travel")  # the place's JSON array
_LOAD_USES = 6  # the user id's placeholders in _LOAD_TEMPLATE
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
# An invitation is queued only for an address nobody invited and nobody unsubscribed: the
# hash of its mailbox, or the hash of its folded spelling as kept before mailboxes were keyed.
_QUEUE_INVITATION = (
    "INSERT INTO outbox (idempotency_key, user_id, kind, recipient, language, params, status,"
    " attempts, next_attempt_at, created_at)"
    " SELECT ?, CAST(? AS BIGINT), 'invitation', ?, ?, ?, 'pending', 0, ?, ?"
    " WHERE NOT EXISTS (SELECT 1 FROM address_hashes WHERE hash IN (?, ?))"
    " ON CONFLICT (idempotency_key) DO NOTHING"
)
# A confirmation to an address another entry already confirmed becomes a notice saying so,
# with no code: decided here, in the step's transaction, so that the chat's reply is the same
# whether the address is taken or not.
_TAKEN = "EXISTS (SELECT 1 FROM entries WHERE address_key = ? AND user_id <> ?)"
_QUEUE_CONFIRMATION = (
    "INSERT INTO outbox (idempotency_key, user_id, kind, recipient, language, params, status,"
    " attempts, next_attempt_at, created_at)"
    f" SELECT ?, CAST(? AS BIGINT), CASE WHEN {_TAKEN} THEN 'address_taken' ELSE 'confirmation'"
    f" END, ?, ?, CASE WHEN {_TAKEN} THEN '{{}}' ELSE ? END, 'pending', 0, ?, ?"
    " ON CONFLICT (idempotency_key) DO NOTHING"
)
_UNKEYED_ENTRIES = "SELECT user_id, email FROM entries WHERE address_key IS NULL"
_KEY_ENTRY = "UPDATE entries SET address_key = ? WHERE user_id = ?"
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
# The person wrote to the bot: they no longer block it (written only when they were marked).
_UNBLOCK = "DELETE FROM telegram_blocked WHERE user_id = ?"
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
        state.last_name, state.phone, int(state.phone_verified), state.email,
        state.pending_email, state.postcode, state.departement, state.area and str(state.area),
        state.question, state.referrer,
        _time(state.created_at), _time(now), _time(state.completed_at),
        pending and pending.token_hash, pending and pending.code_hash,
        _time(expires_at), pending and pending.address,
        _times(state.code_failures), _times(state.confirmation_sends), state.referral_code,
        state.friends_invited, _words(state.actions), _words(state.availability),
    )  # fmt: skip


def _entry_row(
    user_id: int, entry: Entry, now: datetime, providers: Sequence[str]
) -> tuple[Any, ...]:
    consents = [
        {"kind": str(c.kind), "version": c.version, "given_at": _time(c.given_at)}
        for c in entry.consents
    ]
    return (
        user_id, entry.ticket, entry.email, entry.phone, entry.postcode, entry.departement,
        str(entry.area), json.dumps(consents), _time(entry.entered_at), _time(now),
        address_key(entry.email, providers),
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


def _profile_export(row: Any) -> dict[str, Any]:
    """The profile as the person gave it, and where their signup stands."""
    expires_at = row["confirmation_expires_at"]
    return {
        "language": row["language"],
        "first_name": row["first_name"],
        "last_name": row["last_name"],
        "phone": row["phone"],
        "phone_shared_with_the_telegram_button": bool(row["phone_verified"]),
        "email": row["email"],
        "email_being_changed_to": row["pending_email"],
        "postcode": row["postcode"],
        "departement": row["departement"],
        "area": row["area"],
        "question": row["question"],
        "signup_step": row["step"],
        "paused": bool(row["paused"]),
        "started_at": row["created_at"],
        "completed_at": row["completed_at"],
        "updated_at": row["updated_at"],
        "email_waiting_for_confirmation": row["confirmation_address"] if expires_at else None,
        "confirmation_valid_until": expires_at,
        "confirmation_emails_sent_at": [t for t in row["confirmation_sends"].split(",") if t],
        "wrong_codes_typed_at": [t for t in row["code_failures"].split(",") if t],
        "your_referral_code": row["referral_code"],
        "referred_by_code": row["referrer"],
        "friends_invited_count": row["friends_invited"],
        "ways_to_help": [a for a in row["actions"].split(",") if a],
        "availability": [a for a in row["availability"].split(",") if a],
    }


def _expense_export(
    expense: list[Any], receipts: list[Any], payments: list[Any]
) -> dict[str, Any] | None:
    """A winner's travel expense, its receipts (by hash) and the payments made."""
    if not expense:
        return None
    shown = dict(expense[0])
    shown["receipts"] = [dict(receipt) for receipt in receipts]
    shown["payments"] = [dict(payment) for payment in payments]
    return shown


def _entry_export(row: Any) -> dict[str, Any]:
    entry = dict(row)
    entry.pop("address_key", None)  # the comparison key of the address shown beside it
    entry["consents"] = json.loads(entry["consents"])
    return entry


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
        phone_verified=bool(row["phone_verified"]),
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
        blocked=bool(row["blocked"]),
    )


def _apart(effects: Sequence[Effect]) -> bool:
    """Whether the step's statements may go as one: not when two of them count the same use,
    since one statement may not update a row twice (PostgreSQL refuses it)."""
    counted = [(e.quota, e.subject) for e in effects if isinstance(e, CountUse)]
    return len(counted) == len(set(counted))


class Participants:
    """The participant store (storage/ports.py ParticipantStore) on any Database."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._address_key: bytes | None = None
        self._providers: tuple[str, ...] = TAG_IGNORING_PROVIDERS
        self.quotas = Quotas(database, self.address_hash)

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
            held._providers = self._providers
            yield held

    def use_key(self, key: bytes) -> None:
        """Key the hashes (addresses, confirmation codes and links) with the secret key, which
        the shell keeps outside the database (bot/secret_key.py)."""
        self._address_key = key

    @property
    def key(self) -> bytes:
        assert self._address_key is not None, "use_key() first"
        return self._address_key

    def use_tag_providers(self, providers: Sequence[str]) -> None:
        """The providers whose addresses are compared without +tags (ADDRESS_TAG_PROVIDERS)."""
        self._providers = tuple(providers)

    async def key_entries(self) -> tuple[int, int]:
        """Key the entries made before addresses were keyed by mailbox: (keyed, left unkeyed
        because another entry already has that mailbox). Admins see the latter as shared."""
        keyed = clashes = 0
        for row in await self._database.fetch(_UNKEYED_ENTRIES):
            key = address_key(row["email"], self._providers)
            try:
                await self._database.run([(_KEY_ENTRY, (key, row["user_id"]))])
                keyed += 1
            except ContactTaken:
                clashes += 1
        return keyed, clashes

    async def usage(self, state: Participant | None, user_id: int, now: datetime) -> Usage:
        """The quota counts the step on `state` may need, in one round trip (or none)."""
        mailbox, account = subjects_to_read(state, user_id, self._providers)
        queries = []
        if mailbox is not None:
            queries.append(self.quotas.use_query(Quota.CONFIRMATION_EMAILS, mailbox, now))
        if account is not None:
            queries.append(self.quotas.use_query(Quota.ERASURES, account, now))
        if not queries:
            return Usage()
        results = iter(await self._database.read(queries))
        return Usage(
            confirmation_emails=use_of(next(results)) if mailbox is not None else Use(),
            erasures=use_of(next(results)) if account is not None else Use(),
        )

    def address_hash(self, address: str) -> str:
        return address_hash(self.key, address)

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
        before: Participant | None = None,
    ) -> int:
        statements: list[Statement] = []
        if update_id is not None:
            statements.append((_PROCESSED, (update_id, _time(now), replies)))
        user_id = state.user_id
        if state.blocked:
            statements.append((_UNBLOCK, (user_id,)))
        if any(isinstance(effect, ErasePersonalData) for effect in effects):
            # Friends and consents go with the participant (ON DELETE CASCADE).
            key = (user_id, expected_version)
            statements += [
                (_FORGET_NOTES, (user_id, user_id)),
                (_UNLINK_EXPENSE, (user_id,)),
                (_ERASURE_COUNT, key),
                ("DELETE FROM participants WHERE user_id = ? AND version = ?", key),
            ]
            guarded = len(statements) - 1 if expected_version else None
            # The counters are no one's data and outlive the erasure.
            statements += [
                self.quotas.count_statement(effect.quota, effect.subject, now)
                for effect in effects
                if isinstance(effect, CountUse)
            ]
            await self._database.run(statements, guarded, user_id, together=_apart(effects))
            return 0
        version = expected_version + 1
        row = _row(state, version, now)
        if expected_version == 0:
            statements.append((_INSERT, row))
        else:
            statements.append((_UPDATE, (*row[1:], user_id, expected_version)))
        guarded = len(statements) - 1
        # Rows written once each, whatever the order, so that the save may run as one statement;
        # and only when they changed (most steps change neither: two statements of about eight).
        if before is None or before.friends != state.friends:
            statements.append((_FORGET_FRIENDS, (user_id, len(state.friends))))
            if state.friends:
                values = ", ".join(["(?, ?, ?)"] * len(state.friends))
                friends = [(user_id, n, email) for n, email in enumerate(state.friends)]
                statements.append((_KEEP_FRIENDS.format(values), [v for f in friends for v in f]))
        if state.entry is not None and (before is None or before.entry != state.entry):
            entry = _entry_row(user_id, state.entry, now, self._providers)
            statements.append((_SAVE_ENTRY, entry))
        # A use counted under a limit must be taken, or the step is refused whole (StaleWrite)
        # and taken again on the fresh count: another account's step, serialised on another
        # person's lock, may have taken the last one since this step read the count.
        limited = []
        for effect in effects:
            if isinstance(effect, CountUse) and effect.limit is not None:
                limited.append(len(statements))
            statements += self.effect_statements(user_id, effect, now)
        if any(isinstance(effect, QueueEmail | InviteFriends) for effect in effects):
            statements += self.mail_queued()
        # Together (one round trip to a server): no statement here may read what another one
        # writes, nor two write the same row (Database.run).
        await self._database.run(statements, (guarded, *limited), user_id, together=_apart(effects))
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
        if isinstance(effect, CountUse):
            return [self.quotas.count_statement(effect.quota, effect.subject, now, effect.limit)]
        if isinstance(effect, QueueEmail) and effect.kind == "confirmation":
            key = address_key(effect.recipient, self._providers)
            confirmation: tuple[Any, ...] = (
                effect.key, user_id, key, user_id, effect.recipient, effect.language, key,
                user_id, json.dumps(dict(effect.params)), at, at,
            )  # fmt: skip
            return [(_QUEUE_CONFIRMATION, confirmation)]
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
                # One mailbox, one invitation ever: its +tag or dotted spellings are the same.
                hashed = self.address_hash(address_key(address, self._providers))
                spelled = self.address_hash(address)
                params = json.dumps(
                    {
                        "first_name": effect.referrer_first_name,
                        "referral_code": effect.referral_code,
                        "address_hash": hashed,
                    }
                )
                key = f"invitation:{hashed}"
                invitation = (
                    key, user_id, address, effect.language, params, at, at, hashed, spelled,
                )  # fmt: skip
                statements += [(_QUEUE_INVITATION, invitation), (_HASHED, (hashed, "invited", at))]
            return statements
        if isinstance(effect, SuppressAddress):
            return [
                (_HASHED, (effect.address_hash, "unsubscribed", at)),
                (_CANCEL_INVITATION, (f"invitation:{effect.address_hash}",)),
            ]
        return []

    async def mark_processed(
        self,
        update_id: int | None,
        now: datetime,
        replies: str | None = None,
        unblock: int | None = None,
    ) -> None:
        """Note an update that changed nothing (a redelivery is then not acted on again); with
        `unblock`, that person, marked as having blocked the bot, no longer is."""
        statements: list[Statement] = []
        if update_id is not None:
            statements.append((_PROCESSED, (update_id, _time(now), replies)))
        if unblock is not None:
            statements.append((_UNBLOCK, (unblock,)))
        if statements:
            await self._database.run(statements)

    async def forget_processed_before(self, moment: datetime) -> int:
        forget = ("DELETE FROM processed_updates WHERE processed_at < ?", (_time(moment),))
        return (await self._database.run([forget]))[0]

    async def export(self, user_id: int) -> dict[str, Any]:
        """Everything stored that names the person, in words a person reads (no internal
        versions, ticks or hashes): profile, entry, consents, friends, referrals, the emails
        and Telegram messages about them, their draw place and the public records about it."""
        key = (user_id,)
        rows, friends, consents, entries, referrals, emails, messages, places, blocked = (
            await self._database.read(
                [(_SELECT, key), (_FRIENDS, key), (_ALL_CONSENTS, key), (_ENTRY, key),
                 (_REFERRALS, key), (_EMAILS, key), (_MESSAGES, key), (_OWN_PLACE, key),
                 (_BLOCKED, key)]
            )
        )  # fmt: skip
        entry = _entry_export(entries[0]) if entries else None
        place = dict(places[0]) if places else None
        tickets = {t for t in (entry and entry["ticket"], place and place["ticket"]) if t}
        addenda: list[Any] = []
        audit: list[dict[str, Any]] = []
        for ticket in sorted(tickets):
            pattern = f"%{ticket}%"
            found, logged = await self._database.read(
                [(_ADDENDA_ABOUT, (pattern,)), (_AUDIT_ABOUT, (ticket, pattern))]
            )
            addenda += [json.loads(row[0]) for row in found]
            audit += [dict(row) for row in logged]
        expense, receipts, payments = await self._database.read(
            [(_OWN_EXPENSE, key), (_OWN_RECEIPTS, key), (_OWN_PAYMENTS, key)]
        )
        # Only the address the person proved is theirs: anyone can type any address, and the
        # marks would tell them whether a supporter invited it.
        addresses = {entry["email"]} if entry and entry["email"] else set()
        # Marks are kept by mailbox (address_key), and by spelling as before mailboxes were.
        spellings = addresses | {address_key(a, self._providers) for a in addresses}
        hashed = sorted({self.address_hash(address) for address in spellings})
        marks = (
            await self._database.fetch(
                "SELECT reason, created_at FROM address_hashes WHERE hash IN"
                f" ({', '.join('?' * len(hashed))}) ORDER BY created_at, reason",
                hashed,
            )
            if hashed
            else []
        )
        return {
            "telegram_user_id": user_id,
            "profile": _profile_export(rows[0]) if rows else None,
            "entry": entry,
            "consents": [dict(consent) for consent in consents],
            "friends_you_invited": [friend[0] for friend in friends],
            "referrals": {"entries_confirmed_through_your_link": referrals[0][0]},
            "emails": [dict(email) for email in emails],
            "telegram_messages": [dict(message) for message in messages],
            # Telegram refused a message (the person blocked the bot): no announcement until
            # they write to the bot again.
            "telegram_chat_blocked_since": blocked[0][0] if blocked else None,
            "draw": {"place": place, "public_addenda": addenda, "audit_log": audit},
            "travel_expense": _expense_export(expense, receipts, payments),
            # Kept as keyed hashes, which outlive an erasure: invited by someone, unsubscribed.
            "your_address_marked_as": [dict(mark) for mark in marks],
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


async def legacy_secret_key(database: Database) -> str | None:
    """The key a former version kept in the database's `secrets` table (dropped by migration 10),
    if the table is still there and holds one."""
    if not await _has_table(database, "secrets"):
        return None
    rows = await database.fetch("SELECT value FROM secrets WHERE name = 'address_hash_key'")
    return str(rows[0][0]) if rows else None


async def holds_hashes(database: Database) -> bool:
    """Whether the database keeps hashes made with the secret key for good: invited or
    unsubscribed addresses. (Pending confirmation codes expire within days; a person whose
    code stopped matching asks for another one.)"""
    if not await _has_table(database, "address_hashes"):
        return False
    return bool(await database.fetch("SELECT 1 FROM address_hashes LIMIT 1"))


async def _has_table(database: Database, name: str) -> bool:
    exists = (
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
        if database.dialect is Dialect.SQLITE
        else "SELECT COUNT(*) FROM pg_tables WHERE tablename = ? AND schemaname = current_schema()"
    )
    return bool((await database.fetch(exists, (name,)))[0][0])


async def key_matches(database: Database, key: bytes) -> bool:
    """Whether `key` is the one the database was first used with (recorded then as a check
    value, an HMAC of a fixed text that tells nothing of the key)."""
    check = hmac.new(key, b"coffeebot secret key check", hashlib.sha256).hexdigest()
    keep = "INSERT INTO secret_key_check VALUES ('main', ?) ON CONFLICT DO NOTHING"
    await database.run([(keep, (check,))])
    rows = await database.fetch("SELECT value FROM secret_key_check WHERE name = 'main'")
    return hmac.compare_digest(str(rows[0][0]), check)
