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


def audit_entry(
    seq: int, at: datetime, admin_id: int, action: str, details: str, prev: str
) -> dict[str, Any]:
    """The hashed content of an audit entry; its hash is `record_hash` of this."""
    return {
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(),
        "admin_id": admin_id,
        "action": action,
        "details": details,
        "prev": prev,
    }


def verify_audit_chain(entries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Check entries read in `seq` order, each with its stored `hash`; return what is wrong."""
    problems = []
    prev = GENESIS
    for position, entry in enumerate(entries, 1):
        content = {key: value for key, value in entry.items() if key != "hash"}
        seq = entry.get("seq")
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
