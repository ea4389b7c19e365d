"""/export: the confirmed participants as a CSV file, sent to the admin who asks."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

from bot.admin.exports import gzipped, write_export
from bot.admin.tools import AdminCommand, AdminJob, AdminTools


class ParticipantsExport(AdminJob):
    def __init__(self, tools: AdminTools) -> None:
        self._tools = tools

    def commands(self) -> Mapping[str, AdminCommand]:
        return {"export": self.export}

    async def export(self, admin_id: int, language: str, argument: str) -> None:
        """Written row by row to a temporary file (gzipped when larger than Telegram takes), so
        memory stays flat."""
        tools = self._tools
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "participants.csv"
            rows = await write_export(tools.storage, path)
            await tools.audit(admin_id, "export", f"{rows} rows")
            if path.stat().st_size > tools.settings.export_document_max_bytes:
                path = gzipped(path)
            await tools.messenger.send_document(
                admin_id, path.name, path.read_bytes(), tools.say(language, "admin.export")
            )
