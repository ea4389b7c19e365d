"""User-facing wording, per language, as staff wrote it in the catalogue files."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True)
class Catalogue:
    texts: Mapping[str, Mapping[str, str]] = field(repr=False)
    default_language: str
    # Values every text may use, such as the candidate's name.
    constants: Mapping[str, str]
    # Per language, the constants that differ there (the campaign's English name, say).
    localised: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.texts)

    def render(self, language: str, key: str, **params: str) -> str:
        """Fill a text's `{placeholders}` in one pass, so a value is never expanded again."""
        template = self.texts.get(language, {}).get(key)
        if template is None:
            template = self.texts[self.default_language][key]
        values = {**self.constants_for(language), **params}
        return _PLACEHOLDER.sub(lambda match: values.get(match[1], match[0]), template)

    def constants_for(self, language: str) -> dict[str, str]:
        return {**self.constants, **self.localised.get(language, {})}

    def has(self, language: str, key: str) -> bool:
        """Whether `key` exists in `language` or in the default language."""
        return key in self.texts.get(language, {}) or key in self.texts[self.default_language]

    def version(self, language: str, key: str) -> str:
        """Name the exact wording a person agreed to: a change of wording is a new version."""
        text = self.render(language, key)
        return f"{language}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    def language_for(self, language_code: str | None) -> str:
        code = (language_code or "").split("-")[0].lower()
        return code if code in self.texts else self.default_language
