"""/journal (/log): the latest admin actions, from the audit log."""

from __future__ import annotations

from collections.abc import Mapping

from bot.admin.tools import AdminCommand, AdminJob, AdminTools


class Journal(AdminJob):
    def __init__(self, tools: AdminTools) -> None:
        self._tools = tools

    def commands(self) -> Mapping[str, AdminCommand]:
        return {"journal": self.journal, "log": self.journal}

    async def journal(self, admin_id: int, language: str, argument: str) -> None:
        tools = self._tools
        entries = await tools.storage.audit.journal(tools.settings.admin_list_limit)
        lines = [
            f"{tools.local(at)} — {who} — {action} {details}".rstrip()
            for at, who, action, details in entries
        ]
        await tools.send_lines(admin_id, language, "admin.journal", lines)
