"""Language adapters: one declarative `Language` each, in a registry."""

from __future__ import annotations

from runtime.errors import UnknownLanguage
from runtime.languages.base import MEMORY_MIB, SOURCE, SOURCES, Language
from runtime.languages.bash import BASH
from runtime.languages.c import CPP, C
from runtime.languages.csharp import CSHARP
from runtime.languages.go import GO
from runtime.languages.java import JAVA
from runtime.languages.javascript import JAVASCRIPT
from runtime.languages.python import PYTHON
from runtime.languages.rust import RUST
from runtime.languages.typescript import TYPESCRIPT

LANGUAGES: dict[str, Language] = {
    lang.name: lang for lang in (PYTHON, C, CPP, CSHARP, GO, JAVA, JAVASCRIPT, TYPESCRIPT, RUST, BASH)
}


def get(name: str) -> Language:
    try:
        return LANGUAGES[name]
    except KeyError:
        raise UnknownLanguage(name) from None


__all__ = ["LANGUAGES", "MEMORY_MIB", "SOURCE", "SOURCES", "Language", "get"]
