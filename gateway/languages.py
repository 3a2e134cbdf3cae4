"""GET /v1/languages: the runtime registry, with each language's version from its own version probe.

The probe is the adapter's declared `version_probe` argv, a fixed command of the platform's
(never user input), run on this host with a timeout and cached for the process. The sandboxed
probe of `runtime.local.LocalBackend.languages()` needs root and bubblewrap, which a gateway
host need not have; a `LanguageSource` Protocol lets `up` pass that backend in instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Protocol

from runtime.languages import LANGUAGES, Language
from runtime.types import LanguageInfo

PROBE_TIMEOUT_S = 5.0


class LanguageSource(Protocol):
    async def languages(self) -> list[LanguageInfo]: ...


class HostProbe:
    """Runs each adapter's version probe once, on this host."""

    def __init__(self, languages: Mapping[str, Language] | None = None) -> None:
        self._languages = LANGUAGES if languages is None else languages
        self._cache: list[LanguageInfo] | None = None
        self._lock = asyncio.Lock()

    async def languages(self) -> list[LanguageInfo]:
        async with self._lock:
            if self._cache is None:
                self._cache = [await self._probe(lang) for lang in self._languages.values()]
            return list(self._cache)

    async def _probe(self, lang: Language) -> LanguageInfo:
        try:
            process = await asyncio.create_subprocess_exec(
                *lang.version_probe,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
        except OSError:
            return LanguageInfo(lang.name, "", lang.compiled, False)
        try:
            output, _ = await asyncio.wait_for(process.communicate(), PROBE_TIMEOUT_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return LanguageInfo(lang.name, "", lang.compiled, False)
        version = lang.parse_version(output)
        return LanguageInfo(lang.name, version or "", lang.compiled, process.returncode == 0 and version is not None)
