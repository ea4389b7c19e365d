"""/exclure (/exclude): a ticket set aside from the draw, before the freeze, with the reason's
category (public in the certificate) and details (in the audit log only)."""

from __future__ import annotations

from collections.abc import Mapping

from bot.admin.tools import AdminCommand, AdminJob, AdminTools
from conversations.draw import ExclusionReason
from storage.draws import FROZEN


class Exclusions(AdminJob):
    def __init__(self, tools: AdminTools) -> None:
        self._tools = tools

    def commands(self) -> Mapping[str, AdminCommand]:
        return {"exclure": self.exclude, "exclude": self.exclude}

    async def exclude(self, admin_id: int, language: str, argument: str) -> None:
        tools, draws = self._tools, self._tools.storage.draws
        categories = tuple(ExclusionReason)
        ticket, _, rest = argument.partition(" ")
        word, _, details = rest.strip().partition(" ")
        reason = tools.reason(language, word, categories, "exclusion")
        if not ticket or reason is None:
            await tools.reply(admin_id, language, "admin.exclude.usage", reasons=tools.reasons(
                language, categories, "exclusion"))  # fmt: skip
            return
        record = await draws.draw()
        if record is not None and record.status in FROZEN:
            await tools.reply(admin_id, language, "admin.exclude.frozen")
            return
        if not await draws.exclude(ticket.upper(), reason):
            again = await draws.draw()
            frozen = again is not None and again.status in FROZEN
            key = "admin.exclude.frozen" if frozen else "admin.exclude.unknown"
            await tools.reply(admin_id, language, key, ticket=ticket)
            return
        await tools.audit(
            admin_id, "exclude", f"{ticket.upper()} {reason}", details.strip(), ticket.upper()
        )
        await tools.reply(admin_id, language, "admin.exclude.done", ticket=ticket.upper())
