"""File names end to end (issue 21): whatever the gateway accepts is written and compiled; whatever
cannot be is a 422 naming `files.<name>`. Never ERROR.

The gateway is the real Starlette app (its produce port captured in memory: this test makes no claim
about Kafka); what it would produce is decoded and run on the real local backend: real workspace,
real bubblewrap, and gcc for the compiled case.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from core.filenames import Reserved, files_problem
from gateway.app import Services, build_app
from gateway.auth import KeyRing
from gateway.live import LiveView
from gateway.ratelimit import RateLimiter
from runtime.languages import get
from runtime.local import LocalBackend
from runtime.types import LanguageInfo, Limits, RunRequest
from streams.records import ExecutionRequest
from streams.settings import Settings
from streams.states import State
from tests.runtime.conftest import SMALL, next_id

pytestmark = pytest.mark.sandbox


class _Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str]] = []

    async def send(self, topic: str, value: bytes, key: str, headers: list[tuple[str, bytes]] | None = None) -> None:
        self.sent.append((topic, value, key))

    async def reachable(self) -> bool:
        return True


class _Languages:
    async def languages(self) -> list[LanguageInfo]:
        return [LanguageInfo("python", "3.11", False, True), LanguageInfo("c", "12", True, True)]


def _gateway() -> tuple[httpx.AsyncClient, _Sink]:
    sink = _Sink()
    live = LiveView(Settings())
    live.ready.set()
    services = Services(
        settings=Settings(),
        sink=sink,
        live=live,
        languages=_Languages(),
        keys=KeyRing(),
        limiter=RateLimiter(per_min=600_000, burst=100_000),
        language_names=frozenset({"python", "c"}),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(services)), base_url="http://gw"), sink


# Names built to hit every rule: options, response files, the platform's old %2F encoding, multibyte
# characters (bytes, not characters, count), deep paths, reserved and control characters.
_good = st.text(st.sampled_from("abcxyz019_-@%.é€日😀 +="), min_size=1, max_size=8)
_tricky = st.sampled_from(
    ["-rf", "@opts", "%2F", "a%2Fb", ".", "..", "..x", "", "out", "main.c", "main.py", "a\tb", "\x01", "a\x00", "\x85"]
)
_any = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=6)
_long = st.builds(lambda c, n: c * n, st.sampled_from(["a", "é", "€", "😀"]), st.integers(60, 260))
_segment = st.one_of(*[_good] * 8, _tricky, _any, _long)  # mostly good: most examples run
_suffix = st.sampled_from(["", ".txt", ".c", ".h", ".py"])
_depth = st.one_of(st.integers(1, 3), st.integers(1, 12))
_name = st.builds(
    lambda segs, suffix: "/".join(segs) + suffix,
    _depth.flatmap(lambda n: st.lists(_segment, min_size=n, max_size=n)),
    _suffix,
)
_names = st.lists(_name, min_size=1, max_size=3, unique=True)

PY_CHECK = """
import json, sys
for name, content in json.loads(sys.stdin.read()).items():
    assert open(name, encoding="utf-8").read() == content, name
print("ok")
"""
C_MAIN = "int main(void) { return 0; }\n"


async def _submit(client: httpx.AsyncClient, sink: _Sink, body: dict[str, object]) -> ExecutionRequest | str:
    """The request the gateway would produce, or the field its 422 names."""
    sink.sent.clear()
    response = await client.post("/v1/executions", json=body)
    if response.status_code == 422:
        field = response.json()["error"]["field"]
        assert isinstance(field, str)
        return field
    assert response.status_code == 202, response.text
    return ExecutionRequest.decode(sink.sent[-1][1])


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=_names, compiled=st.booleans())
@example(names=["a/b.txt", "a%2Fb.txt"], compiled=False)
@example(names=["-rf.c", "@opts.c", "a/-x.c"], compiled=True)
@example(names=["-rf.py", "--version"], compiled=False)
@example(names=["€" * 85, "é" * 127 + "/" + "é" * 127], compiled=False)
@example(names=["€" * 86], compiled=False)
@example(names=["a", "a/b"], compiled=False)
@example(names=["out/x.txt"], compiled=True)
@example(names=["main.c"], compiled=True)
async def test_what_the_gateway_accepts_is_written_and_compiled(
    backend: LocalBackend, names: list[str], compiled: bool
) -> None:
    language = "c" if compiled else "python"
    lang = get(language)
    # Each file's content is its own name: the program checks every byte arrived under its name.
    files = {name: name for name in names}
    for i, name in enumerate(names):
        if name.endswith(".c"):
            files[name] = f"static int unused_{i};\n"  # compiled with main.c: must be valid C
    code = C_MAIN if compiled else PY_CHECK
    client, sink = _gateway()
    async with client:
        verdict = await _submit(client, sink, {"language": language, "code": code, "files": files})
    expected = files_problem(names, Reserved(lang.source_file, lang.artifacts_dir))
    event("rejected" if isinstance(verdict, str) else f"run ({language})")
    if isinstance(verdict, str):
        assert expected is not None, verdict
        assert verdict == f"files.{expected.name}"
        return
    assert expected is None
    limits = Limits(**{**{f: getattr(SMALL, f) for f in Limits.__dataclass_fields__}, "wall_time_ms": 20_000})
    outcome = await backend.run(
        RunRequest(
            execution_id=next_id("names"),
            language=language,
            code=verdict.code,
            files=verdict.files,
            stdin=json.dumps(files).encode(),
            limits=limits,
        )
    )
    assert outcome.state is State.SUCCEEDED, (outcome.state, outcome.error, outcome.stderr, outcome.compile_output)
    if not compiled:
        assert outcome.stdout == b"ok\n"
