"""Hash chains: the admins' audit log, and the draw's addenda after its certificate.

A record's hash is the SHA-256 of its canonical JSON: keys sorted, no spaces, UTF-8 as is. Each
record names the hash of the one before it (`prev`), so an edited, removed or reordered record
breaks the chain from there on. The verification page computes the same canonical JSON.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

# The `prev` of the first audit entry.
GENESIS = "0" * 64


def canonical(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def note_digest(salt: str, note: str) -> str:
    """What the chain keeps of an admin's free text (a reason, a reference): a salted hash,
    so that the text can be erased and the chain still holds. The salt goes with the text;
    without it, the digest cannot be tested against a guessed name."""
    return hashlib.sha256(f"{salt}:{note}".encode()).hexdigest()


def audit_entry(
    seq: int,
    at: datetime,
    admin_id: int,
    action: str,
    details: str,
    prev: str,
    note_digest: str | None = None,
    ticket: str | None = None,
) -> dict[str, Any]:
    """The hashed content of an audit entry; its hash is `record_hash` of this. `details` is
    kept as long as the log; an admin's free text is hashed only as its `note_digest` (entries
    written before notes existed have neither key, and hash as they did)."""
    entry: dict[str, Any] = {
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(),
        "admin_id": admin_id,
        "action": action,
        "details": details,
        "prev": prev,
    }
    if note_digest is not None:
        entry["note_digest"] = note_digest
    if ticket is not None:
        entry["ticket"] = ticket
    return entry


# Beside an entry's hashed content: its hash, and its free text with the salt of its digest
# (erased by the purge and by the erasure of the person whose ticket it is about).
_UNHASHED = frozenset({"hash", "note", "note_salt"})


def verify_audit_chain(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Check entries read in `seq` order, each with its stored `hash`; return what is wrong."""
    problems = []
    prev = GENESIS
    for position, entry in enumerate(entries, 1):
        content = {key: value for key, value in entry.items() if key not in _UNHASHED}
        seq = entry.get("seq")
        note, salt = entry.get("note"), entry.get("note_salt")
        if note is not None and (
            salt is None or note_digest(str(salt), str(note)) != entry.get("note_digest")
        ):
            problems.append(f"entry {seq}: its note was changed after it was written")
        if seq != position:
            problems.append(f"entry {seq}: expected number {position} (one removed or moved)")
        if entry.get("prev") != prev:
            problems.append(f"entry {seq}: does not follow the entry before it")
        if record_hash(content) != entry.get("hash"):
            problems.append(f"entry {seq}: its content was changed after it was written")
        prev = str(entry.get("hash"))
        if len(problems) >= 20:
            problems.append("… and maybe more")
            break
    return problems
