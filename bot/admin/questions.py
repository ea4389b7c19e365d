"""/questions: the questions for the candidate, newest first, with postcodes."""

from __future__ import annotations

from collections.abc import Mapping

from bot.admin.tools import AdminCommand, AdminJob, AdminTools


class Questions(AdminJob):
    def __init__(self, tools: AdminTools) -> None:
        self._tools = tools

    def commands(self) -> Mapping[str, AdminCommand]:
        return {"questions": self.questions}

    async def questions(self, admin_id: int, language: str, argument: str) -> None:
        tools = self._tools
        asked = await tools.storage.reports.questions(tools.settings.admin_list_limit)
        await tools.audit(admin_id, "questions", f"{len(asked)} shown")
        lines = [f"• {postcode} — {question}" for postcode, question in asked]
        await tools.send_lines(admin_id, language, "admin.questions", lines)
