"""Identifiers are matched whole (issue 21): Python's `$` also accepts a trailing newline.

Pure rules, then the gateway's own HTTP edge (in-memory ports: no claim about Kafka here).
"""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.app import Services, build_app
from gateway.auth import KeyRing, new_key, parse_entries
from gateway.errors import ConfigError
from gateway.live import LiveView
from gateway.ratelimit import RateLimiter
from processors.policy import DEFAULT_POLICY
from processors.rules import Rejection, validate
from runtime.types import LanguageInfo
from streams.records import ExecutionRequest
from streams.settings import Settings
from streams.tracing import valid_trace_id

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ids = st.builds(lambda head, tail: head + tail, st.sampled_from(_ALNUM), st.text(_ALNUM + "._-", max_size=40))
# What `$` lets through after a whole match, and other trailing or embedded junk.
junk = st.sampled_from(["\n", "\r\n", "\n\n", " ", "\t", "\x00", "\u2028", "é"])


def _request(**fields: object) -> ExecutionRequest:
    base: dict[str, object] = {"id": "ok-1", "language": "python", "code": "print(1)"}
    base.update(fields)
    return ExecutionRequest(**base)  # type: ignore[arg-type]


def _rejected_field(**fields: object) -> str | None:
    verdict = validate(_request(**fields), DEFAULT_POLICY, {"python"})
    return verdict.field if isinstance(verdict, Rejection) else None


@given(ids)
def test_a_valid_id_and_tenant_pass(value: str) -> None:
    assert _rejected_field(id=value) is None
    assert _rejected_field(tenant=value[:64]) is None


@given(ids, junk)
def test_an_id_with_a_trailing_newline_is_rejected(value: str, tail: str) -> None:
    assert _rejected_field(id=value + tail) == "id"
    assert _rejected_field(tenant=value[:60] + tail) == "tenant"


@pytest.mark.parametrize("url", ["https://example.com/hook\n", "http://x\r\n", "https://a b", "ftp://x"])
def test_a_callback_url_is_matched_whole(url: str) -> None:
    assert _rejected_field(callback_url=url) == "callback_url"
    assert _rejected_field(callback_url=url.rstrip("\r\n").replace(" ", "")) in (None, "callback_url")


def test_key_entries_and_trace_ids_are_matched_whole() -> None:
    digest = "a" * 64
    assert parse_entries([f"team:{digest}"], "test") == {digest: "team"}
    with pytest.raises(ConfigError):
        new_key("team\n")
    assert not valid_trace_id("0123456789abcdef0123456789abcdef\n")
    assert valid_trace_id("0123456789abcdef0123456789abcdef")


class _Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, str]] = []

    async def send(self, topic: str, value: bytes, key: str, headers: list[tuple[str, bytes]] | None = None) -> None:
        self.sent.append((topic, value, key))

    async def reachable(self) -> bool:
        return True


class _Languages:
    async def languages(self) -> list[LanguageInfo]:
        return [LanguageInfo("python", "3.11", False, True)]


def gateway_client() -> tuple[httpx.AsyncClient, _Sink]:
    sink = _Sink()
    live = LiveView(Settings())
    live.ready.set()
    services = Services(
        settings=Settings(),
        sink=sink,
        live=live,
        languages=_Languages(),
        keys=KeyRing(),
        limiter=RateLimiter(per_min=60_000, burst=10_000),
        language_names=frozenset({"python"}),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(services)), base_url="http://gw"), sink


@pytest.mark.parametrize("bad", ["abc\n", "abc\r\n", "-abc", "a" * 129, "abc\x00"])
async def test_the_gateway_refuses_an_id_with_a_newline(bad: str) -> None:
    client, sink = gateway_client()
    async with client:
        response = await client.post("/v1/executions", json={"language": "python", "code": "1", "id": bad})
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "id"
    assert sink.sent == []
