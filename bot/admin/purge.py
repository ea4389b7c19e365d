"""The purge the privacy notice promises, run by the bot every PURGE_EVERY_HOURS and by
`coffeebot purge [--dry-run]`: the plan from the retention settings and the time
(conversations/retention.py), carried out table by table (storage/purge.py), its counts printed
and, when anything changed, written in the audit log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bot.mail.eml import EmlFolder
from bot.settings import Settings
from conversations.retention import KEPT_WHY, PurgePlan, describe, purge_plan
from storage import Storage
from storage.purge import PurgeCount, Purger

log = logging.getLogger(__name__)

# The audit log's admin id for what the bot does by itself.
SYSTEM = 0
# The copies bot/expense_claims.py keeps, `<sha256><suffix>` (its partial writes are hidden).
_RECEIPT_SUFFIXES = (".jpg", ".pdf")


@dataclass(frozen=True)
class PurgeReport:
    plan: PurgePlan
    counts: list[PurgeCount]
    dry_run: bool

    @property
    def changed(self) -> int:
        """The rows erased or stripped (not those kept on purpose, such as owed claims)."""
        return 0 if self.dry_run else sum(c.rows for c in self.counts if not c.kept)

    def lines(self) -> list[str]:
        """Each rule with its rows, then each table's under it, and why, for rows kept."""
        sums = {rule.category: 0 for rule in self.plan.rules}
        for count in self.counts:
            sums[count.category] += count.rows
        described = describe(self.plan, sums)
        lines = ["dry run: nothing changed, these rows are due" if self.dry_run else "purged"]
        for rule, line in zip(self.plan.rules, described, strict=False):
            lines.append(line)
            lines += [f"  {c.table}: {c.rows}" for c in self.counts if c.category == rule.category]
            if rule.category in KEPT_WHY:
                lines.append(f"  {KEPT_WHY[rule.category]}")
        return lines + described[len(self.plan.rules) :]


class Purge:
    def __init__(self, storage: Storage, settings: Settings, clock: Callable[[], datetime]) -> None:
        self._storage = storage
        self._settings = settings
        self._clock = clock

    async def run(self, dry_run: bool = False) -> PurgeReport:
        """Counts what is due (a read); unless a dry run, and only when something is due,
        erases it in one transaction and logs the counts in the audit log."""
        now = self._clock()
        settings = self._settings
        ends_at, caps = settings.calendar.ends_at, settings.expense_rules
        plan = purge_plan(settings.retention, ends_at, now, caps)
        purger = Purger(self._storage.database)
        counts = await purger.count(plan)
        if dry_run or not any(count.rows for count in counts if not count.kept):
            return PurgeReport(plan, counts, dry_run)
        report = PurgeReport(plan, await purger.run(plan), dry_run=False)
        if report.changed:  # another process may have purged the same rows meanwhile
            details = ", ".join(
                f"{c.category}.{c.table} {c.rows}" for c in report.counts if c.rows and not c.kept
            )
            await self._storage.audit.log(SYSTEM, "purge", details, now)
            log.info("purged %d rows: %s", report.changed, details)
            # A rehearsal's .eml files name the people whose emails were just erased: they go
            # now, not at a next start that may never come (`coffeebot purge` after the end).
            await EmlFolder(self._settings.mail_outbox_dir).sweep(self._storage.outbox.kept)
            await self._sweep_receipt_copies()
        return report

    async def _sweep_receipt_copies(self) -> None:
        """EXPENSE_FILES_DIR's copies of receipts no expense holds any more (a claim erased, or
        a receipt the winner took back): a ticket names its traveller. A copy is written after
        its row commits, and the files are listed before the rows are read: a receipt being
        taken meanwhile is never swept."""
        if not self._settings.expense_files_dir:
            return
        copies = _receipt_copies(Path(self._settings.expense_files_dir))
        held = await self._storage.expenses.receipt_hashes()
        gone = [path for path in copies if path.stem not in held]
        for path in gone:
            path.unlink(missing_ok=True)
        if gone:
            log.info("deleted %d receipt copies no expense holds", len(gone))

    async def due(self) -> None:
        """The bot's periodic job."""
        await self.run()


def _receipt_copies(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [path for path in folder.iterdir() if path.suffix in _RECEIPT_SUFFIXES]
