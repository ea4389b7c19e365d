"""What /mesdonnees sends: the JSON file of everything that names the person, each consent with
the words they agreed to, and a short summary to read in the chat."""

from __future__ import annotations

import json
from typing import Any

from conversations.catalogue import Catalogue
from conversations.model import Participant

_NONE = "\N{EN DASH}"


def consent_wording(texts: Catalogue, kind: str, version: str) -> str | None:
    """The words a consent's version names, when the catalogue still holds them: a version is
    the language and a hash of the text, so a reworded text is another version."""
    language, _, _ = version.partition("-")
    key = f"consent.{kind}.text"
    if language not in texts.languages or not texts.has(language, key):
        return None
    return texts.render(language, key) if texts.version(language, key) == version else None


def readable(texts: Catalogue, data: dict[str, Any]) -> dict[str, Any]:
    """The export, each consent with its wording."""
    consents = []
    for consent in data["consents"]:
        wording = consent_wording(texts, consent["kind"], consent["version"])
        consents.append(
            {
                **consent,
                "text_you_agreed_to": wording
                or "(this wording is no longer in the bot's catalogue; its version names it)",
            }
        )
    return {**data, "consents": consents}


def document(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, indent=2, default=str).encode()


def summary(texts: Catalogue, state: Participant, data: dict[str, Any]) -> str:
    """A few lines in the person's language: who we think they are and what we hold."""
    language = state.language
    profile = data["profile"] or {}
    name = " ".join(p for p in (profile.get("first_name"), profile.get("last_name")) if p)
    place = data["draw"]["place"]
    if place is None:
        where = texts.render(language, "mydata.place.none")
    elif place["role"] == "winner":
        where = texts.render(language, "mydata.place.winner")
    else:
        where = texts.render(language, "mydata.place.reserve", rank=str(place["rank_in_role"]))
    return texts.render(
        language,
        "mydata.summary",
        name=name or _NONE,
        phone=profile.get("phone") or _NONE,
        email=profile.get("email") or _NONE,
        postcode=profile.get("postcode") or _NONE,
        consents=str(sum(1 for c in data["consents"] if not c.get("withdrawn_at"))),
        friends=str(len(data["friends_you_invited"])),
        emails=str(len(data["emails"])),
        messages=str(len(data["telegram_messages"])),
        place=where,
    )
