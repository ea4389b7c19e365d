"""French typography over every French text people read: the catalogue, the long texts and the
email templates. Placeholders, template code, HTML tags, links and commands are left aside:
they are not French prose, and a space added to them would break them."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest

from conversations.catalogue import Catalogue

NARROW_NBSP = "\u202f"
NBSP = "\u00a0"

# What is not prose: Jinja code, HTML tags and entities, {placeholders}, links, mail addresses,
# bot commands, and clock times such as 20:00 or HH:MM.
_NOT_PROSE = re.compile(
    r"\{\{.*?\}\}|\{%.*?%\}|<[^>]*>|&\w+;|\{[a-z_][a-z0-9_]*\}"
    r"|https?://\S+|\bt\.me/\S+|[\w.+-]+@[\w-]+(\.[\w-]+)+|(?<!\w)/[a-z_]+"
    r"|\b\w\w:\w\w\b"
)
# Each rule: a pattern that finds a violation, and what the rule asks.
RULES = (
    (re.compile("'"), "’ (U+2019) for an apostrophe, not '"),
    (re.compile(rf"[^{NARROW_NBSP}](?=[;!?])"), "a narrow no-break space (U+202F) before ; ! ?"),
    (re.compile(rf"«(?!{NARROW_NBSP})"), "a narrow no-break space (U+202F) after «"),
    (re.compile(rf"[^{NARROW_NBSP}]»"), "a narrow no-break space (U+202F) before »"),
    (re.compile(rf"[^{NBSP}]:"), "a no-break space (U+00A0) before :"),
    (re.compile(rf"[^{NBSP}]€"), "a no-break space (U+00A0) before €"),
)


def violations(text: str) -> list[str]:
    """Each place where the text breaks a rule, with the rule and the words around it."""
    prose = _NOT_PROSE.sub("x", text)
    found = []
    for pattern, rule in RULES:
        for match in pattern.finditer(prose):
            around = prose[max(match.start() - 20, 0) : match.end() + 20]
            found.append(f"{rule}: …{around!r}…")
    return found


def _french_templates() -> list[Path]:
    folder = Path(str(resources.files("conversations") / "texts" / "emails"))
    return sorted(folder.glob("*.fr.*"))


def test_the_french_catalogue_follows_french_typography(texts: Catalogue) -> None:
    problems = {
        key: found for key, text in texts.texts["fr"].items() if (found := violations(text))
    }
    assert problems == {}


@pytest.mark.parametrize("template", _french_templates(), ids=lambda path: path.name)
def test_each_french_email_template_follows_french_typography(template: Path) -> None:
    assert violations(template.read_text(encoding="utf-8")) == []


def test_there_are_french_templates_to_check() -> None:
    names = {path.name for path in _french_templates()}
    assert {"confirmation.fr.txt", "invitation.fr.html", "winner.fr.txt"} <= names


@pytest.mark.parametrize(
    "bad",
    [
        "C'est gratuit",
        "Bonjour !",
        "Pourquoi ?",
        "Bonjour\u00a0!",  # a no-break space, but not the narrow one
        "deux ; trois",
        "Règlement : /reglement",
        "le tirage « Un café »",
        "«\u202fUn café »",
        "jusqu’à 200 €",
        "200€",
    ],
)
def test_each_rule_finds_its_violation(bad: str) -> None:
    assert violations(bad)


@pytest.mark.parametrize(
    "good",
    [
        "C’est gratuit\u202f! Pourquoi\u202f? deux\u202f; trois",
        "Règlement\u00a0: /reglement",
        "le tirage «\u202fUn café\u202f»",
        "jusqu’à {travel_max_eur}\u00a0€",
        "{{ first_name }}, ouvrez {{ link }}",
        '<p style="color: #666;">Bonjour</p>',
        "https://t.me/bot?start=c_x and /start r_code",
        "écrivez à dpo@campagne.example",
        "le 29 novembre à 11 h 30, et à 20:00",
        "Usage\u00a0: /rendezvous AAAA-MM-JJ HH:MM adresse",
        "☕ Prenez un café avec {candidate}\u202f!",
    ],
)
def test_placeholders_links_commands_and_times_are_left_alone(good: str) -> None:
    assert violations(good) == []
