"""Tests run as if the caller had no bot settings, and write nothing into the working tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.smtp_server import free_port

REPO = Path(__file__).resolve().parent.parent
CACHES = {".git", "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".ruff_cache"}


def working_tree() -> set[Path]:
    files = set()
    for folder, subfolders, names in os.walk(REPO):
        subfolders[:] = [s for s in subfolders if s not in CACHES and not s.startswith(".venv")]
        files |= {Path(folder, name) for name in names}
    return files


def test_the_caller_s_mail_database_and_telegram_settings_reach_no_test(tmp_path: Path) -> None:
    before = working_tree()
    leaky = {
        **os.environ,
        "SMTP_URL": f"smtp://127.0.0.1:{free_port()}",  # nobody listens: mail would be stuck
        "MAIL_OUTBOX_DIR": "outbox",
        "DATABASE_URL": "sqlite:///leaked.db",
        "TELEGRAM_BOT_TOKEN": "1:LEAKED",
    }
    chosen = ["tests/test_email_loop.py", "tests/test_mail.py", "tests/test_console.py"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--basetemp={tmp_path / 'inner'}", *chosen],
        cwd=REPO, env=leaky, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert working_tree() == before
