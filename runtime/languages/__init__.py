"""Language adapters: one declarative `Language` each, in a registry."""

from __future__ import annotations

from runtime.errors import UnknownLanguage
from runtime.languages.base import SOURCE, Language
from runtime.languages.python import PYTHON

LANGUAGES: dict[str, Language] = {PYTHON.name: PYTHON}


def get(name: str) -> Language:
    try:
        return LANGUAGES[name]
    except KeyError:
        raise UnknownLanguage(name) from None


__all__ = ["LANGUAGES", "SOURCE", "Language", "get"]
