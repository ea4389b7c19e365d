"""Dates and times as a person reads them: in full, with the time zone they are given in.

A winner in La Réunion reading "29/11/2026 11:00" cannot tell whose 11 o'clock it is; every
moment shown to a person goes through `long_datetime`.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from conversations.catalogue import Catalogue


def zone_name(zone: tzinfo) -> str:
    """The IANA name of a zone (`Europe/Paris`), or its own name for a fixed offset."""
    return str(getattr(zone, "key", None) or zone.tzname(None) or "UTC")


def long_datetime(texts: Catalogue, language: str, moment: datetime, zone: tzinfo) -> str:
    """`dimanche 29 novembre 2026 à 11 h, heure de Paris` / `Sunday 29 November 2026 at 11:00
    (Paris time)`, with the words and their order from the catalogue."""
    local = moment.astimezone(zone)
    weekdays = texts.render(language, "date.weekdays").split(",")
    months = texts.render(language, "date.months").split(",")
    day = texts.render(language, "date.first_day") if local.day == 1 else str(local.day)
    time_key = "date.time_on_the_hour" if local.minute == 0 else "date.time"
    time = texts.render(
        language,
        time_key,
        hour=str(local.hour),
        hour24=f"{local.hour:02d}",
        minute=f"{local.minute:02d}",
    )
    name = zone_name(zone)
    label_key = f"date.zone.{name}"
    label = texts.render(language, label_key) if texts.has(language, label_key) else name
    return texts.render(
        language,
        "date.long",
        weekday=weekdays[local.weekday()].strip(),
        day=day,
        month=months[local.month - 1].strip(),
        year=str(local.year),
        time=time,
        zone=label,
    )
