"""The admin service's registry of jobs: each command and button routed to the one job that
claims it."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from bot.admin.service import routes
from bot.admin.tools import AdminButton, AdminCommand, AdminJob


class Job(AdminJob):
    def __init__(self, *names: str, buttons: tuple[str, ...] = ()) -> None:
        self.names, self.keys = names, buttons
        self.ran: list[str] = []

    async def run(self, admin_id: int, language: str, argument: str) -> None:
        self.ran.append(argument)

    async def press(self, admin_id: int, language: str) -> None:
        self.ran.append("pressed")

    def commands(self) -> Mapping[str, AdminCommand]:
        return dict.fromkeys(self.names, self.run)

    def buttons(self) -> Mapping[str, AdminButton]:
        return dict.fromkeys(self.keys, self.press)


async def test_each_name_goes_to_its_job() -> None:
    stats, frais = Job("stats"), Job("frais", "expenses", buttons=("admin.pay.ok",))
    commands, buttons = routes([stats, frais])
    await commands["expenses"](1, "fr", "TK1")
    await buttons["admin.pay.ok"](1, "fr")
    assert (stats.ran, frais.ran) == ([], ["TK1", "pressed"])
    assert set(commands) == {"stats", "frais", "expenses"}


@pytest.mark.parametrize(
    "second", [Job("annonce"), Job("other", buttons=("admin.announce.confirm",))]
)
def test_a_name_two_jobs_claim_is_refused_at_start(second: Job) -> None:
    first = Job("annonce", buttons=("admin.announce.confirm",))
    with pytest.raises(ValueError, match="already taken"):
        routes([first, second])
