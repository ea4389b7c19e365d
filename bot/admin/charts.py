"""The /stats chart: signups per day and the funnel, as a PNG."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no screen: draw into memory

from matplotlib.figure import Figure

from conversations.admin import Statistics


def stats_chart(
    stats: Statistics, titles: tuple[str, str], funnel_labels: tuple[str, ...]
) -> bytes:
    figure = Figure(figsize=(9, 4), dpi=100)
    per_day, funnel = figure.subplots(1, 2)
    days = [day for day, _ in stats.per_day]
    per_day.bar(range(len(days)), [count for _, count in stats.per_day], color="#c0392b")
    per_day.set_xticks(range(len(days)), [day[5:] for day in days], rotation=45, fontsize=7)
    per_day.set_title(titles[0])
    values = [stats.started, stats.completed, stats.confirmed, stats.eligible]
    funnel.barh(list(funnel_labels)[::-1], values[::-1], color="#2c3e50")
    funnel.set_title(titles[1])
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()
