"""/stats: the funnel, engagement, areas, départements, emails, erasures, and a chart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from bot.admin.tools import AdminCommand, AdminJob, AdminTools
from conversations.model import Reply

# A further paragraph of /stats from another job (the announcements' progress), in a language.
Section = Callable[[str], Awaitable[str | None]]


class Statistics(AdminJob):
    def __init__(self, tools: AdminTools, sections: Sequence[Section] = ()) -> None:
        self._tools = tools
        self._sections = sections

    def commands(self) -> Mapping[str, AdminCommand]:
        return {"stats": self.stats}

    async def stats(self, admin_id: int, language: str, argument: str) -> None:
        """Sends the funnel, engagement, areas, départements, emails, and a chart."""
        tools, say = self._tools, self._tools.say
        storage = tools.storage
        await tools.audit(admin_id, "stats", "")
        stats = await storage.reports.statistics()
        emails = await storage.outbox.counts()
        erased = await storage.participants.count(
            "erased.complete"
        ) + await storage.participants.count("erased.incomplete")
        engaged = ", ".join(
            f"{say(language, f'engage.action.{a}')} {n}" for a, n in stats.engaged.items()
        )
        areas = (
            ", ".join(f"{say(language, f'area.{a}')} {n}" for a, n in stats.by_area.items()) or "—"
        )
        departements = (
            ", ".join(f"{d} {n}" for d, n in list(stats.by_departement.items())[:15]) or "—"
        )
        text = say(
            language, "admin.stats", started=str(stats.started), completed=str(stats.completed),
            confirmed=str(stats.confirmed), eligible=str(stats.eligible), engaged=engaged,
            invited=str(stats.friends_invited), joined=str(stats.friends_joined), areas=areas,
            departements=departements, sent=str(emails.get("sent", 0)),
            pending=str(emails.get("pending", 0) + emails.get("sending", 0)),
            failed=str(emails.get("failed", 0) + emails.get("interrupted", 0)),
            erased=str(erased),
        )  # fmt: skip
        more = [await section(language) for section in self._sections]
        text = "\n\n".join(filter(None, (text, *more)))
        await tools.messenger.send(admin_id, Reply(text))
        # matplotlib takes a second to import: only when a chart is asked for.
        from bot.admin.charts import stats_chart

        titles = (say(language, "admin.chart.per_day"), say(language, "admin.chart.funnel"))
        labels = tuple(
            say(language, f"admin.chart.{k}")
            for k in ("started", "completed", "confirmed", "eligible")
        )
        chart = stats_chart(stats, titles, labels)
        await tools.messenger.send_photo(admin_id, chart, titles[1])
