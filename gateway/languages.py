"""GET /v1/languages: the runtime registry, with each language's version from its own version probe.

The probe is the adapter's declared `version_probe` argv, a fixed command of the platform's
(never user input), run on this host with a timeout and cached for the process. The sandboxed
probe of `runtime.local.LocalBackend.languages()` needs root and bubblewrap, which a gateway
host need not have; a `LanguageSource` Protocol lets `up` pass that backend in instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from runtime.languages import LANGUAGES, Language
from runtime.types import LanguageInfo

PROBE_TIMEOUT_S = 5.0
PROBE_RETRY_S = 30.0


class LanguageSource(Protocol):
    async def languages(self) -> list[LanguageInfo]: ...


class HostProbe:
    """Runs each adapter's version probe on this host: once while it succeeds; a language whose probe
    failed is probed again after `retry_s` (its toolchain may still be installing: `make up` installs
    the compiled languages' toolchains in the background)."""

    def __init__(
        self,
        languages: Mapping[str, Language] | None = None,
        *,
        retry_s: float = PROBE_RETRY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._languages = LANGUAGES if languages is None else languages
        self._cache: dict[str, tuple[LanguageInfo, float]] = {}
        self._lock = asyncio.Lock()
        self._retry_s = retry_s
        self._clock = clock

    async def languages(self) -> list[LanguageInfo]:
        async with self._lock:
            now = self._clock()
            for name, lang in self._languages.items():
                cached = self._cache.get(name)
                if cached is None or (not cached[0].available and now - cached[1] >= self._retry_s):
                    self._cache[name] = (await self._probe(lang), now)
            return [self._cache[name][0] for name in self._languages]

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
