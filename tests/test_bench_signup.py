"""The signup benchmark measures what it claims: every user its own contacts, every signup
complete, through either Bot API."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from bench import signup
from bench.bot_api import serve
from tests.telegram_fakes import FakeBotApi, Updates


def contacts(steps: list[dict[str, Any]]) -> tuple[str, str, str]:
    phone = steps[8]["message"]["contact"]["phone_number"]
    return phone, steps[9]["message"]["text"], steps[12]["message"]["text"]


def test_every_simulated_user_has_its_own_phone_and_addresses() -> None:
    updates = Updates()
    first = contacts(signup.signup_updates(updates, Updates.user(1)))
    second = contacts(signup.signup_updates(updates, Updates.user(2)))
    assert all(a != b for a, b in zip(first, second, strict=True))


async def test_every_signup_completes_in_process(tmp_path: Path) -> None:
    result = await signup.run_variant("coffeebot", 4, [200], 0.2, 0.0, None, tmp_path)
    assert result["signups"] == 4 + 10  # the closed loop's, then the paced run's
    assert result["steps_per_s"] > 0 and result["paced"]["200"]["p99_ms"] > 0
    assert result["paced"]["200"]["busy_pct"] > 0 and result["paced"]["200"]["late_max_ms"] >= 0


async def test_a_run_where_a_signup_fails_is_void(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unique = signup.signup_updates

    def shared_phone(updates: Updates, user: dict[str, Any]) -> list[dict[str, Any]]:
        steps = unique(updates, user)
        steps[8] = updates.contact(user, "33612345678", owner_id=user["id"])
        return steps

    monkeypatch.setattr(signup, "signup_updates", shared_phone)
    with pytest.raises(SystemExit, match="1 of 3 signups completed"):
        await signup.run_variant("coffeebot", 3, [], 1.0, 0.0, None, tmp_path)


@pytest.fixture
async def api_url() -> AsyncIterator[str]:
    runner = web.AppRunner(serve(0.0))
    await runner.setup()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    await web.SockSite(runner, listener).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/bot"
    await runner.cleanup()


async def test_every_signup_completes_over_http(tmp_path: Path, api_url: str) -> None:
    result = await signup.run_variant("coffeebot", 3, [], 1.0, 0.0, api_url, tmp_path)
    assert result["signups"] == 3


# The baseline is python-telegram-bot's usual design, warning included.
@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBUserWarning")
async def test_the_conversationhandler_bot_completes_its_signups(tmp_path: Path) -> None:
    result = await signup.run_variant("conversationhandler", 2, [], 1.0, 0.0, None, tmp_path)
    assert result["signups"] == 2


async def test_the_tail_watch_sees_a_blocked_loop_and_the_collector() -> None:
    watch = signup.TailWatch()
    watch.start()
    await asyncio.sleep(0.02)
    time.sleep(0.05)  # noqa: ASYNC251 (what the watch must see: a step holding the loop)
    gc.collect()
    await asyncio.sleep(0.02)
    tail = await watch.stop()
    assert tail["late_max_ms"] >= 45
    assert tail["gc_total_ms"] > 0 and tail["gc_max_ms"] <= tail["gc_total_ms"]
    assert tail["busy_pct"] > 0


async def test_the_benchmarks_api_tells_the_driver_but_keeps_no_call() -> None:
    # Telegram keeps nothing in the bot's process: a fake that kept every call made the
    # collector walk an ever longer young generation, pauses that the bot would not have.
    seen: list[str] = []
    api = FakeBotApi(listener=lambda call: seen.append(call.method), record=False)
    data = RequestData([RequestParameter.from_input("chat_id", 1)])
    status, _ = await api.do_request("https://api.telegram.org/botT/sendMessage", "POST", data)
    assert (status, seen, api.calls) == (200, ["sendMessage"], [])


def test_the_report_says_which_targets_are_met_and_which_were_not_measured() -> None:
    def medians(steps: float, cpu: float, paced: dict[str, float]) -> dict[str, Any]:
        return {
            "steps_per_s": steps,
            "cpu_us_per_step": cpu,
            "paced": {rate: {"p99_ms": p99} for rate, p99 in paced.items()},
        }

    lines = signup.verdicts(
        {
            ("coffeebot", "inproc"): medians(2100, 480, {"1000": 61.0}),
            ("coffeebot", "http"): medians(999, 700, {}),
            ("conversationhandler", ""): medians(30, 900, {}),
        }
    )
    assert lines == [
        "  inproc steps/s, closed loop ≥ 2,000: 2,100.0: met",
        "  inproc CPU µs a step < 500: 480.0: met",
        "  inproc p99 ms at 1000 steps/s offered < 60: 61.0: NOT met",
        "  inproc times the ConversationHandler bot ≥ 40: 70.0: met",
        "  http   steps/s, closed loop ≥ 1,000: 999.0: NOT met",
        "  http   p99 ms at 600 steps/s offered < 100: not measured",
        "  http   times the ConversationHandler bot ≥ 40: 33.3: NOT met",
    ]
