"""What admins did, as a hash chain: each entry names the hash of the one before it.

An admin's free text (a reason, a reference) may name a person: it is kept beside the entry,
with the salt of the digest the chain hashes (conversations/ledger.py `note_digest`), until the
purge or the erasure of the person whose ticket the entry is about empties both. The chain
still verifies then: it never hashed the text itself."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from conversations.ledger import GENESIS, audit_entry, note_digest, record_hash
from storage.database import Database, Statement
from storage.participants import _time
from storage.ports import StaleWrite

# Someone holds the ticket: their entry, or their draw place (the erasure unlinks both).
_HELD = (
    "(EXISTS (SELECT 1 FROM entries WHERE ticket = ?)"
    " OR EXISTS (SELECT 1 FROM draw_places WHERE ticket = ? AND user_id IS NOT NULL))"
)


class AuditLog:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def log(
        self,
        admin_id: int,
        action: str,
        details: str,
        now: datetime,
        note: str = "",
        ticket: str | None = None,
    ) -> None:
        """Append an entry chained to the last one; a concurrent append makes this one retry.
        `details` stays as long as the log; `note` is the admin's free text, erasable."""
        while True:
            statement = await self.append_statement(admin_id, action, details, now, note, ticket)
            try:
                appended = await self._database.run([statement])
            except StaleWrite:  # another entry took this number first
                continue
            if appended[0] == 1:
                return

    async def append_statement(
        self,
        admin_id: int,
        action: str,
        details: str,
        now: datetime,
        note: str = "",
        ticket: str | None = None,
    ) -> Statement:
        """The entry's insert, chained to the head as read now, for a caller's own transaction
        (the action and its entry commit together): it inserts nothing if another entry was
        appended meanwhile, and the caller starts again."""
        seq, prev = await self._head()
        salt = secrets.token_hex(16) if note else None
        digest = note_digest(salt, note) if salt is not None else None
        entry = audit_entry(seq + 1, now, admin_id, action, details, prev, digest, ticket)
        kept: str = "?"
        about: tuple[Any, ...] = ()
        if ticket is not None and salt is not None:
            # A note about a ticket nobody holds any more (its person erased, even while this
            # entry was being written, or the purge done) is not kept: the erasure emptied the
            # notes written before it, and would have emptied this one. Its digest stays.
            kept = f"CASE WHEN {_HELD} THEN CAST(? AS TEXT) END"
            about = (ticket, ticket)
        return (
            "INSERT INTO audit_log (at, admin_id, action, details, seq, prev_hash, hash, ticket,"
            " note, note_salt, note_digest) SELECT ?, CAST(? AS BIGINT), ?, ?, CAST(? AS INTEGER),"
            f" ?, ?, ?, {kept}, {kept}, ? WHERE COALESCE((SELECT MAX(seq) FROM audit_log), 0) = ?",
            (
                _time(now), admin_id, action, details, seq + 1, prev, record_hash(entry), ticket,
                *about, note or None, *about, salt, digest, seq,
            ),
        )  # fmt: skip

    async def _head(self) -> tuple[int, str]:
        rows = await self._database.fetch(
            "SELECT seq, hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1"
        )
        return (rows[0][0], rows[0][1]) if rows else (0, GENESIS)

    async def head(self) -> str:
        return (await self._head())[1]

    async def chain(self) -> list[dict[str, Any]]:
        """The chained entries as stored, in order, each with its stored hash, and its note
        and salt while they are kept."""
        rows = await self._database.fetch(
            "SELECT seq, at, admin_id, action, details, prev_hash, hash, note_digest, ticket,"
            " note, note_salt FROM audit_log WHERE seq IS NOT NULL ORDER BY seq"
        )
        return [
            {
                **audit_entry(
                    r[0], datetime.fromisoformat(r[1]), r[2], r[3], r[4], r[5], r[7], r[8]
                ),
                "hash": r[6],
                **({"note": r[9], "note_salt": r[10]} if r[9] is not None else {}),
            }
            for r in rows
        ]

    async def logged(self, action: str) -> bool:
        rows = await self._database.fetch(
            "SELECT 1 FROM audit_log WHERE action = ? LIMIT 1", (action,)
        )
        return bool(rows)

    async def unchained_after(self) -> int:
        """Entries without a place in the chain, dated after it began: none was written so."""
        rows = await self._database.fetch(
            "SELECT COUNT(*) FROM audit_log WHERE seq IS NULL"
            " AND at >= (SELECT MIN(at) FROM audit_log WHERE seq IS NOT NULL)"
        )
        return int(rows[0][0])

    async def unchained_entries(self) -> int:
        rows = await self._database.fetch("SELECT COUNT(*) FROM audit_log WHERE seq IS NULL")
        return int(rows[0][0])

    async def journal(self, limit: int) -> list[tuple[datetime, int, str, str]]:
        """The latest entries, each with its note while it is kept."""
        rows = await self._database.fetch(
            "SELECT at, admin_id, action, details, note FROM audit_log ORDER BY at DESC, seq DESC"
            " LIMIT ?",
            (limit,),
        )
        return [
            (datetime.fromisoformat(r[0]), r[1], r[2], f"{r[3]} {r[4] or ''}".strip()) for r in rows
        ]
