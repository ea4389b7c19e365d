"""`coffeebot audit verify`: checks the admins' audit log as a hash chain."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from bot.bootstrap import migrated_storage
from bot.settings import Settings
from conversations.ledger import verify_audit_chain


async def _read_chain(settings: Settings) -> tuple[list[dict[str, Any]], int, int]:
    async with migrated_storage(settings) as storage:
        audit = storage.audit
        return await audit.chain(), await audit.unchained_entries(), await audit.unchained_after()


def verify_audit(settings: Settings, certificate_path: str | None) -> int:
    """Prints what breaks the chain, if anything; 0 when it is intact."""
    entries, unchained, forged = asyncio.run(_read_chain(settings))
    problems = verify_audit_chain(entries)
    if forged:
        problems.append(f"{forged} entries outside the chain are dated after it began")
    if certificate_path:
        head = json.loads(Path(certificate_path).read_text(encoding="utf-8")).get("audit_head")
        if head not in {entry["hash"] for entry in entries}:
            problems.append(f"the certificate's audit head {head} is not in the chain")
    for problem in problems:
        print(f"BROKEN: {problem}")
    if unchained:
        print(f"note: {unchained} entries from before the chain existed are not protected by it")
    if problems:
        return 1
    head = entries[-1]["hash"] if entries else "none"
    # Removing the newest entries leaves a shorter chain that still holds: compare the count and
    # head with the ones published last (the certificate's, or the latest /journal).
    print(f"OK: chain intact, {len(entries)} entries, head {head}")
    return 0
