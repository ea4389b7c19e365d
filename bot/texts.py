"""Loads the wording catalogues that staff edit: `conversations/texts/<language>.toml` and
`conversations/texts/<language>/<key>.txt` for the long texts (rules, privacy notice)."""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any

from bot.settings import Settings
from conversations.catalogue import Catalogue
from conversations.retention import retention_text


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


def load_catalogue(settings: Settings) -> Catalogue:
    root = resources.files("conversations") / "texts"
    texts: dict[str, dict[str, str]] = {}
    for entry in sorted(root.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".toml"):
            continue
        language = entry.name.removesuffix(".toml")
        texts[language] = _flatten(tomllib.loads(entry.read_text(encoding="utf-8")))
        long_texts = root / language
        if long_texts.is_dir():
            for text_file in long_texts.iterdir():
                if text_file.name.endswith(".txt"):
                    key = text_file.name.removesuffix(".txt")
                    texts[language][key] = text_file.read_text(encoding="utf-8").strip()
    if settings.default_language not in texts:
        raise ValueError(f"DEFAULT_LANGUAGE {settings.default_language!r} has no catalogue")
    constants = {
        "candidate": settings.candidate_name,
        "campaign": settings.campaign_name,
        "winners": str(settings.winners),
        "travel_max_eur": str(settings.travel_max_eur),
        "travel_arranged_max_eur": str(settings.travel_arranged_max_eur),
        "controller": settings.controller_name,
        "controller_address": settings.controller_address,
        "controller_email": settings.controller_email,
        "dpo": settings.dpo_contact,
        "mail_provider": settings.mail_provider,
        "host": settings.hosting_provider,
        "retention_incomplete_days": str(settings.retention_incomplete_days),
        "retention_after_end_days": str(settings.retention_after_end_days),
    }
    english = {"candidate": settings.candidate_name_en, "campaign": settings.campaign_name_en}
    localised = {"en": {name: value for name, value in english.items() if value}}
    catalogue = Catalogue(texts, settings.default_language, constants, localised)
    # The notice's retention lines, written from the settings the purge follows.
    for language in texts:
        localised.setdefault(language, {})["retention"] = retention_text(
            settings.retention, settings.calendar.ends_at, catalogue, language, settings.zone
        )
    return Catalogue(texts, settings.default_language, constants, localised)
