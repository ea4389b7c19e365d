"""`coffeebot draw page`: writes the verification page, one self-contained HTML file.

The page's wording comes from the catalogue's `page.*` texts; with `--embed`, the certificate,
ticket list and addenda go inside it, so that one file is all a sceptic needs.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from bot.settings import Settings
from bot.texts import load_catalogue


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no "<" can close it."""
    return json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")


def page_html(language: str, embedded: dict[str, Any] | None) -> str:
    texts = load_catalogue(Settings(default_language=language))
    wording = {
        key.removeprefix("page."): texts.render(language, key)
        for key in texts.texts[language]
        if key.startswith("page.")
    }
    template = (resources.files("bot.admin") / "verify_page.html").read_text(encoding="utf-8")
    return (
        template.replace("__LANGUAGE__", language)
        .replace("__TEXTS__", _script_json(wording))
        .replace("__EMBEDDED__", _script_json(embedded))
    )


def write_page(output: str, language: str, embed: list[str] | None) -> int:
    embedded = None
    if embed:
        certificate, tickets, addenda = embed
        embedded = {
            "certificate": json.loads(Path(certificate).read_text(encoding="utf-8")),
            "tickets": Path(tickets).read_text(encoding="ascii"),
            "addenda": json.loads(Path(addenda).read_text(encoding="utf-8"))
            if addenda != "-"
            else [],
        }
    Path(output).write_text(page_html(language, embedded), encoding="utf-8")
    print(f"wrote {output}")
    return 0
