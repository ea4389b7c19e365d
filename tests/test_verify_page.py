"""The verification page in a real headless Chromium, on certificates the Python code made.

Debian's chromium, driven by Playwright (its own browser download cannot work here): without
it the tests skip, saying why, except under CI=true where they fail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.admin.verify_page import page_html
from conversations.addenda import ReplacementReason, next_addendum, standing
from conversations.draw import (
    ALGORITHM_V1,
    Beacon,
    BeaconSource,
    FrozenDraw,
    commitment_of,
    draw,
    first_drawn,
    ticket_list,
    tickets_sha256,
)
from conversations.ledger import GENESIS
from tests.conftest import NOW
from tests.test_draw import drand_beacon

CHROMIUM = "/usr/bin/chromium"
ARGUMENTS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SECRET = bytes(range(100, 132))
MANUAL = Beacon(BeaconSource.MANUAL, "7 12 23 34 45 + 3", (NOW + timedelta(hours=1)).isoformat())
TICKETS = [f"TK{n:08d}" for n in range(1, 301)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -e '.[test]')")
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"no browser at {CHROMIUM}: run scripts/install-browser as root")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGUMENTS)
        yield launched
        launched.close()


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser test cannot run under CI: {reason}")
    pytest.skip(reason)


def certified(
    tickets: list[str], beacon: Beacon = MANUAL, replacements: int = 0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    frozen = FrozenDraw(SECRET, tickets, 3, 4, NOW, (("TK99999999", "duplicate"),))
    certificate = draw(frozen, beacon, NOW + timedelta(hours=2), GENESIS).to_json()
    addenda: list[dict[str, Any]] = []
    for _ in range(replacements):
        replaced = standing(certificate, addenda)[0][0]
        promoted = standing(certificate, addenda)[1][0]
        reason = ReplacementReason.DECLINED
        addenda.append(next_addendum(certificate, addenda, replaced, reason, promoted, NOW))
    return certificate, addenda


def open_page(
    browser: Any,
    tmp_path: Path,
    certificate: dict[str, Any],
    addenda: list[dict[str, Any]],
    tickets: str,
) -> Any:
    page_file = tmp_path / "verify.html"
    embedded = {"certificate": certificate, "addenda": addenda, "tickets": tickets}
    page_file.write_text(page_html("fr", embedded), encoding="utf-8")
    page = browser.new_page()
    page.goto(page_file.as_uri())
    page.wait_for_selector("#verdict[data-ok]", timeout=30_000)
    return page


def checks(page: Any) -> dict[str, bool]:
    result = page.evaluate("window.coffeebotResult.checks")
    return {item["id"]: item["ok"] for item in result}


def test_a_genuine_certificate_is_accepted_with_the_pythons_order(
    browser: Any, tmp_path: Path
) -> None:
    certificate, addenda = certified(TICKETS, replacements=2)
    page = open_page(browser, tmp_path, certificate, addenda, ticket_list(TICKETS))
    assert page.text_content("#verdict").startswith("✔")
    assert checks(page) == dict.fromkeys(
        ("list", "commitment", "beacon", "seed", "excluded", "order", "addenda"), True
    )
    seed = bytes.fromhex(certificate["seed"])
    python_order = sorted(
        TICKETS, key=lambda ticket: hmac.new(seed, ticket.encode(), hashlib.sha256).digest()
    )
    assert page.evaluate("window.coffeebotResult.order") == python_order
    winners, reserves = standing(certificate, addenda)
    assert page.text_content("#winners") == " ".join(winners)
    assert page.text_content("#reserves") == " ".join(reserves)
    page.fill("#lookup", certificate["winners"][0].lower())
    assert page.text_content("#lookup-result") == "Position 1 sur 300\u00a0: non tiré."
    page.fill("#lookup", winners[-1])
    assert page.text_content("#lookup-result").endswith("\u00a0: gagnant.")
    page.fill("#lookup", reserves[0])
    assert page.text_content("#lookup-result").endswith("suppléant n°1.")
    page.fill("#lookup", "NOPE")
    assert page.text_content("#lookup-result") == "Ce ticket n’est pas dans la liste."


def _changed_ticket(c: dict[str, Any], a: list[dict[str, Any]], t: list[str]) -> Any:
    return c, a, [*t[:-1], "TK77777777"], "list"


def _changed_seed(c: dict[str, Any], a: list[dict[str, Any]], t: list[str]) -> Any:
    return {**c, "seed": "00" * 32}, a, t, "seed"


def _changed_secret(c: dict[str, Any], a: list[dict[str, Any]], t: list[str]) -> Any:
    return {**c, "secret": "11" * 32}, a, t, "commitment"


def _swapped_order(c: dict[str, Any], a: list[dict[str, Any]], t: list[str]) -> Any:
    winners = c["winners"]
    return {**c, "winners": [winners[1], winners[0], *winners[2:]]}, a, t, "order"


def _changed_addendum(c: dict[str, Any], a: list[dict[str, Any]], t: list[str]) -> Any:
    return c, [{**a[0], "reason": "withdrew"}, a[1]], t, "addenda"


def _skipped_reserve(c: dict[str, Any], a: list[dict[str, Any]], t: list[str]) -> Any:
    return c, [*a[:1], {**a[1], "promoted": c["reserves"][2]}], t, "addenda"


def _excluded_in_list(c: dict[str, Any], a: list[dict[str, Any]], t: list[str]) -> Any:
    return c, a, [*t, "TK99999999"], "excluded"


@pytest.mark.parametrize(
    "tamper",
    [
        _changed_ticket,
        _changed_seed,
        _changed_secret,
        _swapped_order,
        _changed_addendum,
        _skipped_reserve,
        _excluded_in_list,
    ],
)
def test_a_tampered_certificate_is_refused(browser: Any, tmp_path: Path, tamper: Any) -> None:
    certificate, addenda = certified(TICKETS, replacements=2)
    certificate, addenda, tickets, failing = tamper(certificate, addenda, TICKETS)
    page = open_page(browser, tmp_path, certificate, addenda, ticket_list(tickets))
    assert page.text_content("#verdict").startswith("✘")
    assert checks(page)[failing] is False
    mark = page.text_content(f'#checks li[data-check="{failing}"]')
    assert mark.startswith("✘")


def test_a_drand_certificate_and_a_version_1_one_are_accepted(browser: Any, tmp_path: Path) -> None:
    certificate, _ = certified(TICKETS, drand_beacon(NOW + timedelta(seconds=61)))
    page = open_page(browser, tmp_path, certificate, [], ticket_list(TICKETS))
    assert all(checks(page).values()) and page.text_content("#beacon").startswith("tirage drand")
    late = {**certificate["beacon"], "round": certificate["beacon"]["round"] + 1}
    page = open_page(browser, tmp_path, {**certificate, "beacon": late}, [], ticket_list(TICKETS))
    assert checks(page)["beacon"] is False
    seed = bytes(range(32))
    drawn = first_drawn(seed, TICKETS, 5)
    version_1 = {
        "algorithm": ALGORITHM_V1, "drawn_at": NOW.isoformat(), "tickets": len(TICKETS),
        "tickets_sha256": tickets_sha256(TICKETS), "seed": seed.hex(),
        "commitment": commitment_of(seed), "winners": drawn[:2], "reserves": drawn[2:],
    }  # fmt: skip
    page = open_page(browser, tmp_path, version_1, [], ticket_list(TICKETS))
    assert page.text_content("#verdict").startswith("✔")


def test_files_chosen_by_hand_and_text_never_taken_as_html(browser: Any, tmp_path: Path) -> None:
    hostile = Beacon(
        BeaconSource.MANUAL, '<img src=x onerror="document.title=1">', MANUAL.not_before
    )
    certificate, addenda = certified(TICKETS, hostile, replacements=1)
    (tmp_path / "certificate.json").write_text(json.dumps(certificate))
    (tmp_path / "addenda.json").write_text(json.dumps(addenda))
    (tmp_path / "tickets.txt").write_text(ticket_list(TICKETS))
    page_file = tmp_path / "verify.html"
    page_file.write_text(page_html("en", None), encoding="utf-8")
    page = browser.new_page()
    page.goto(page_file.as_uri())
    assert page.text_content("h1") == "Verify the draw"
    page.set_input_files("#certificate-file", str(tmp_path / "certificate.json"))
    page.set_input_files("#addenda-file", str(tmp_path / "addenda.json"))
    page.set_input_files("#tickets-file", str(tmp_path / "tickets.txt"))
    page.click("#verify")
    page.wait_for_selector("#verdict[data-ok]")
    assert page.text_content("#verdict").startswith("✔")
    assert "<img" in page.text_content("#beacon") and page.query_selector("img") is None
    assert page.title() == "Verify the draw"


def test_a_hundred_thousand_tickets_in_under_ten_seconds(browser: Any, tmp_path: Path) -> None:
    tickets = [f"T{n:09d}" for n in range(100_000)]
    certificate, addenda = certified(tickets, replacements=1)
    started = time.perf_counter()
    page = open_page(browser, tmp_path, certificate, addenda, ticket_list(tickets))
    elapsed = time.perf_counter() - started
    assert page.text_content("#verdict").startswith("✔")
    assert page.get_attribute("#progress", "max") == "100000"
    assert page.evaluate("document.getElementById('progress').value") == 100_000
    assert page.text_content("#progress-text") == "100000 / 100000 tickets"
    print(f"100,000 tickets verified in the browser in {elapsed:.2f} s")
    assert elapsed < 10
