"""The gateway's pure core: error mapping, view folding, signatures, token buckets, keys, log cursors, offsets."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import signature
from gateway.api_types import ExecutionCreate
from gateway.auth import KeyRing, hash_key, new_key, parse_entries
from gateway.client import exit_code_for, language_for, parse_sse
from gateway.errors import ApiError, ConfigError, from_decode_error, from_rejection, from_validation_error
from gateway.logstream import LogCursor
from gateway.ratelimit import RateLimiter, TokenBucket
from gateway.server import check_binding, gateway_url
from gateway.view import View, iso_utc
from gateway.webhooks import backoff_ms
from processors.rules import Rejection
from streams.records import ExecutionEvent, ExecutionRequest, LogChunk, RunOutcome
from streams.settings import Settings
from streams.states import State
from tests.gateway.helpers import result_for

# -- error mapping ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (b'{"language": 1, "code": "x"}', "invalid_type", "language"),
        (b'{"code": "x"}', "missing_field", "language"),
        (b'{"language": "p", "code": "x", "limits": {"disk_mib": true}}', "invalid_type", "limits.disk_mib"),
        (b'{"language": "p", "code": "x", "limits": {"gpu": 1}}', "unknown_field", "limits.gpu"),
        (b'{"language": "p", "code": "x", "args": ["a", 2]}', "invalid_type", "args[1]"),
        (b'{"language": "p", "code": "x", "limits": {"memory_mib": 1e400}}', "invalid_type", "limits.memory_mib"),
        (b"[]", "invalid_type", None),
    ],
)
def test_validation_errors_name_the_field(body: bytes, code: str, field: str | None) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.json.decode(body, type=ExecutionCreate)
    error = from_validation_error(info.value)
    assert (error.status, error.code, error.field) == (422, code, field)


def test_decode_errors_and_rejections_map_to_the_contract() -> None:
    with pytest.raises(msgspec.DecodeError) as info:
        msgspec.json.decode(b"{", type=ExecutionCreate)
    assert from_decode_error(info.value).status == 400
    error = from_rejection(Rejection("limit_above_maximum", "limits.memory_mib", "too much"))
    assert error.body() == {
        "error": {"code": "limit_above_maximum", "message": "too much", "field": "limits.memory_mib"}
    }
    assert (error.status, ApiError(404, "not_found", "x").field) == (422, None)


# -- the view -----------------------------------------------------------------------------------

PATH = [State.REQUESTED, State.VALIDATED, State.QUEUED, State.SCHEDULED, State.STARTED, State.SUCCEEDED]


def _events(execution_id: str = "e1") -> list[ExecutionEvent]:
    request = ExecutionRequest(id=execution_id, language="python", code="1", tenant="acme", created_at_ms=1_000)
    return [
        ExecutionEvent(
            execution_id=execution_id,
            seq=seq,
            state=state,
            at_ms=1_000 + 100 * seq,
            attempt=1 if seq >= 4 else 0,
            request=request.encode() if seq == 0 else None,
            outcome=RunOutcome(exit_code=0, stdout=b"ok\xff\n", run_ms=5) if state.terminal else None,
        )
        for seq, state in enumerate(PATH)
    ]


def test_events_fold_into_the_execution_object() -> None:
    view = View()
    assert all(view.fold_event(e) for e in _events())
    record = view.get("e1")
    assert record is not None and record.finished and record.tenant == "acme" and record.language == "python"
    execution = record.execution()
    assert (execution.state, execution.exit_code, execution.stdout) == (State.SUCCEEDED, 0, "ok\ufffd\n")
    assert execution.timings.queued_ms == 200 and execution.timings.total_ms == 500 and execution.attempts == 1
    assert execution.created_at == "1970-01-01T00:00:01.000Z" and execution.finished_at == iso_utc(1_500)
    assert all(e.request is None for e in record.events)  # the request's bytes are not kept


@given(st.permutations(list(range(6))), st.lists(st.integers(0, 5), max_size=10))
def test_any_order_with_duplicates_folds_to_the_same_record(order: list[int], dups: list[int]) -> None:
    events = _events()
    view = View()
    for i in [*order, *dups]:
        view.fold_event(events[i])
    record = view.get("e1")
    assert record is not None
    assert [e.seq for e in record.events] == list(range(6)) and record.state is State.SUCCEEDED
    assert not any(view.fold_event(e) for e in events)  # a replay changes nothing


def test_an_impossible_transition_is_ignored_and_a_result_wins() -> None:
    view = View()
    events = _events()
    view.fold_event(events[0])
    assert not view.fold_event(ExecutionEvent(execution_id="e1", seq=1, state=State.SUCCEEDED, at_ms=5))
    assert view.get("e1").state is State.REQUESTED  # type: ignore[union-attr]
    result = result_for("e1", State.FAILED, exit_code=3)
    assert view.fold_result(result)
    assert not view.fold_result(result)  # the same result again changes nothing
    record = view.get("e1")
    assert record is not None and record.state is State.FAILED and record.execution().exit_code == 3


def test_a_submitted_execution_is_requested_until_its_events_come() -> None:
    view = View()
    view.submitted("s1", tenant="t", language="python", created_at_ms=2_000, callback_url=None)
    record = view.get("s1")
    assert record is not None and record.state is State.REQUESTED and not record.finished
    assert record.execution().created_at == iso_utc(2_000) and record.execution().finished_at is None


# -- webhooks: signature, backoff, offsets ------------------------------------------------------


def test_signatures_verify_only_the_same_secret_body_and_fresh_time() -> None:
    now = int(time.time())
    header = signature.sign("k", now, b'{"a":1}')
    assert header.startswith(f"t={now},v1=")
    assert signature.verify("k", header, b'{"a":1}', now)
    assert not signature.verify("other", header, b'{"a":1}', now)
    assert not signature.verify("k", header, b'{"a":2}', now)
    assert not signature.verify("k", header, b'{"a":1}', now + 301)
    assert not signature.verify("k", "garbage", b'{"a":1}', now)
    assert signature.verify("k", f"{header},v1=deadbeef", b'{"a":1}', now)  # several v1 values: any may match


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_ms(n, base_ms=1000, cap_ms=10_000) for n in range(1, 7)] == [1000, 2000, 4000, 8000, 10_000, 10_000]


# -- auth and rate limits -----------------------------------------------------------------------


def test_keys_are_stored_hashed_and_map_to_tenants(tmp_path: Path) -> None:
    key, entry = new_key("acme")
    assert key not in entry and entry == f"acme:{hash_key(key)}"
    file = tmp_path / "keys"
    file.write_text(f"# comment\n{entry}\n\n")
    ring = KeyRing.load(file=file, inline=f"globex:{hash_key('g')}")
    assert len(ring) == 2 and not ring.open
    assert ring.authenticate(f"Bearer {key}").tenant == "acme"
    assert ring.authenticate("bearer g").tenant == "globex"
    for header in (None, "Bearer", "Basic abc", "Bearer wrong"):
        with pytest.raises(ApiError) as info:
            ring.authenticate(header)
        assert info.value.status == 401
    with pytest.raises(ConfigError):
        parse_entries(["acme:not-a-hash"], "test")
    assert KeyRing.load(file=None, inline="").authenticate(None).tenant == "default"


def test_an_open_gateway_binds_loopback_only() -> None:
    check_binding("127.0.0.1", KeyRing())
    check_binding("0.0.0.0", KeyRing({hash_key("k"): "t"}))
    with pytest.raises(ConfigError, match=r"refusing to bind 0\.0\.0\.0"):
        check_binding("0.0.0.0", KeyRing())
    assert gateway_url(Settings(gateway_host="0.0.0.0", gateway_port=81)) == "http://127.0.0.1:81"
    assert gateway_url(Settings(gateway_url="http://gw:9/")) == "http://gw:9"


def test_token_bucket_refills_and_says_when() -> None:
    bucket = TokenBucket(capacity=2, refill_per_s=1.0, tokens=2, updated_s=0.0)
    assert [bucket.take(0.0), bucket.take(0.0)] == [0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(1.0)
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert bucket.take(1.0) == 0.0
    limiter = RateLimiter(per_min=60, burst=1)
    assert (limiter.check("a", 0.0), limiter.check("a", 0.1), limiter.check("b", 0.1)) == (0, 1, 0)
    assert limiter.check("a", 1.2) == 0
    assert RateLimiter(per_min=0, burst=1).check("x", 0) == 0


# -- log cursor ---------------------------------------------------------------------------------


def _chunk(stream: str, offset: int, data: bytes, attempt: int = 1) -> LogChunk:
    return LogChunk(execution_id="x", attempt=attempt, stream=stream, offset=offset, data=data, at_ms=0)  # type: ignore[arg-type]


def test_log_cursor_drops_what_was_sent_and_resumes_from_its_id() -> None:
    cursor = LogCursor()
    assert cursor.take(_chunk("stdout", 0, b"abc"))[1].text == "abc"  # type: ignore[union-attr]
    assert cursor.take(_chunk("stdout", 0, b"abc")) == (False, None)  # duplicate
    piece = cursor.take(_chunk("stdout", 1, b"bcde"))[1]  # overlap: only the new part
    assert piece is not None and (piece.offset, piece.text) == (3, "de")
    assert cursor.take(_chunk("stdout", 9, b"gap")) == (False, None)
    assert cursor.event_id == "1.5.0"
    resumed = LogCursor.parse(cursor.event_id)
    assert resumed.take(_chunk("stdout", 0, b"abcde")) == (False, None)
    assert resumed.take(_chunk("stderr", 0, b"e"))[1].text == "e"  # type: ignore[union-attr]
    assert LogCursor.parse("garbage").event_id == "0.0.0"


def test_log_cursor_holds_back_a_split_character_and_restarts_on_a_new_attempt() -> None:
    cursor = LogCursor()
    snowman = "☃".encode()
    assert cursor.take(_chunk("stdout", 0, b"a" + snowman[:1]))[1].text == "a"  # type: ignore[union-attr]
    assert cursor.event_id == "1.1.0"  # the half character is not counted as sent
    assert cursor.take(_chunk("stdout", 2, snowman[1:]))[1].text == "☃"  # type: ignore[union-attr]
    new_attempt, piece = cursor.take(_chunk("stdout", 0, b"again", attempt=2))
    assert new_attempt and piece is not None and piece.text == "again" and cursor.event_id == "2.5.0"
    assert cursor.take(_chunk("stdout", 5, b"old", attempt=1)) == (False, None)


# -- client helpers -----------------------------------------------------------------------------


def test_sse_parsing_and_exit_codes() -> None:
    lines = ["event: stdout", "id: 1.3.0", 'data: {"text": "hi"}', "", ": ping", "", "data: a", "data: b", ""]
    events = list(parse_sse(lines))
    assert [(e.event, e.id, e.data) for e in events] == [
        ("stdout", "1.3.0", '{"text": "hi"}'),
        ("message", "1.3.0", "a\nb"),
    ]
    assert exit_code_for({"state": "FAILED", "exit_code": 3}) == 3
    assert exit_code_for({"state": "FAILED", "exit_code": None, "signal": 9}) == 137
    assert exit_code_for({"state": "LIMIT_EXCEEDED", "exit_code": None, "signal": None}) == 1
    assert (language_for(Path("a.PY")), language_for(Path("a.rs")), language_for(Path("a.txt"))) == (
        "python",
        "rust",
        None,
    )


def test_the_readme_verification_recipe_accepts_what_the_gateway_signs() -> None:
    readme = (Path(__file__).resolve().parents[2] / "gateway" / "README.md").read_text()
    recipe = readme.split("Verifying, in Python:\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(recipe, namespace)
    verify = namespace["verify"]
    body = b'{"id":"x","state":"SUCCEEDED"}'
    header = signature.sign("k", int(time.time()), body)
    assert verify("k", header, body) is True  # type: ignore[operator]
    assert verify("k", header, body + b"!") is False  # type: ignore[operator]
    assert verify("other", header, body) is False  # type: ignore[operator]
