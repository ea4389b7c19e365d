"""The bot freezes its startup heap and collects the young generation less often."""

from __future__ import annotations

import subprocess
import sys


def test_the_startup_heap_is_frozen_and_the_threshold_is_the_setting() -> None:
    # In a process of its own: freezing would keep every earlier test's garbage alive here.
    probe = (
        "import gc; from bot.telegram.application import tune_gc;"
        " from bot.settings import Settings;"
        " tune_gc(Settings.from_env({'GC_YOUNG_THRESHOLD': '1234'}));"
        " print(gc.get_threshold()[0], gc.get_freeze_count())"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True
    ).stdout
    threshold, frozen = map(int, output.split())
    assert threshold == 1234
    assert frozen > 10_000  # the imported modules' objects
