"""The wording staff edit: every language says everything, and placeholders are filled."""

from __future__ import annotations

import re

from conversations.catalogue import Catalogue


def _wording(texts: Catalogue, language: str) -> dict[str, str]:
    """Every text but the command menu, whose keys are each language's command names."""
    return {k: v for k, v in texts.texts[language].items() if not k.startswith("menu.")}


def test_every_language_has_every_text(texts: Catalogue) -> None:
    french = set(_wording(texts, "fr"))
    for language in texts.languages:
        assert set(_wording(texts, language)) == french, language
        assert len(texts.texts[language]) == len(texts.texts["fr"]), language


def test_placeholders_are_the_same_in_every_language(texts: Catalogue) -> None:
    for key, french in _wording(texts, "fr").items():
        for language in texts.languages:
            other = texts.texts[language][key]
            assert set(re.findall(r"\{([^{}]*)\}", other)) == set(
                re.findall(r"\{([^{}]*)\}", french)
            ), key


def test_constants_fill_every_text(texts: Catalogue) -> None:
    rendered = texts.render("fr", "welcome")
    assert "{" not in rendered and "Camille Dupont" in rendered


def test_a_value_is_never_expanded_again(texts: Catalogue) -> None:
    rendered = texts.render("fr", "phone.saved", phone="{candidate}")
    assert "{candidate}" in rendered


def test_a_consent_wording_change_is_a_new_version(texts: Catalogue) -> None:
    before = texts.version("fr", "consent.processing.text")
    changed = Catalogue(
        {"fr": {**texts.texts["fr"], "consent.processing.text": "autre texte"}},
        "fr",
        texts.constants,
    )
    assert changed.version("fr", "consent.processing.text") != before
    assert texts.version("en", "consent.processing.text") != before


def test_menu_commands_are_commands_the_bot_knows(texts: Catalogue) -> None:
    from conversations.commands import COMMANDS

    for language in texts.languages:
        menu = [
            key.removeprefix("menu.") for key in texts.texts[language] if key.startswith("menu.")
        ]
        assert menu and set(menu) <= set(COMMANDS), language


def test_every_text_renders_with_its_parameters_and_leaves_no_braces(texts: Catalogue) -> None:
    """Each `{name}` a text holds is a parameter the renderer fills: none stays on screen."""
    for language in texts.languages:
        for key, template in texts.texts[language].items():
            names = re.findall(r"\{([^{}]*)\}", template)
            rendered = texts.render(language, key, **{name: f"«{name}»" for name in names})
            assert not re.search(r"\{[^{}]*\}", rendered), (language, key, rendered)
            for name in names:
                assert f"«{name}»" in rendered or name in texts.constants, (language, key)


def test_a_placeholder_with_digits_is_filled(texts: Catalogue) -> None:
    rendered = texts.render("en", "admin.draw.preview", sha256="ab" * 32, count="3")
    assert "ab" * 32 in rendered and "{sha256}" not in rendered
