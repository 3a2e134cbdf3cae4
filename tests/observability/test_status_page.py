"""The status page at `/`: counts by state, the latest executions, escaped, through the real route."""

from __future__ import annotations

import httpx

from gateway.app import Services, build_app
from gateway.auth import KeyRing, hash_key
from gateway.live import LiveView
from gateway.ratelimit import RateLimiter
from gateway.status import render
from gateway.view import View
from streams.records import ExecutionEvent, ExecutionResult
from streams.settings import Settings
from streams.states import State
from tests.gateway.test_app_edges import MemorySink, NoLanguages


def finished(view: View, execution_id: str, state: State, total_ms: int, tenant: str = "default") -> None:
    view.fold_event(ExecutionEvent(execution_id=execution_id, seq=0, state=State.REQUESTED, at_ms=1_000, tenant=tenant))
    view.fold_result(
        ExecutionResult(
            id=execution_id,
            language="python",
            tenant=tenant,
            state=state,
            total_ms=total_ms,
            created_at_ms=1_000 + len(view),
            finished_at_ms=1_000 + total_ms,
        )
    )


def test_counts_latest_executions_latency_and_log_links() -> None:
    view = View()
    finished(view, "ok-1", State.SUCCEEDED, 120)
    finished(view, "ok-2", State.SUCCEEDED, 80)
    finished(view, "slow", State.LIMIT_EXCEEDED, 5_000)
    view.fold_event(ExecutionEvent(execution_id="waiting", seq=0, state=State.REQUESTED, at_ms=9_000))
    page = render(view, now_ms=10_000)
    assert '<div class="count" id="count-SUCCEEDED"><b>2</b>' in page
    assert '<div class="count" id="count-LIMIT_EXCEEDED"><b>1</b>' in page
    assert '<div class="count" id="count-REQUESTED"><b>1</b>' in page
    assert '<div class="count" id="count-FAILED"><b>0</b>' in page
    assert "120 ms" in page and "5000 ms" in page
    assert 'href="/v1/executions/ok-1/logs"' in page
    assert page.index("waiting") < page.index("ok-1")  # newest first
    assert render(view, now_ms=10_000, latest=1).count("log stream") == 1


def test_ids_and_languages_are_escaped() -> None:
    view = View()
    view.submitted("<script>x</script>", tenant="t", language="<b>py</b>", created_at_ms=1, callback_url=None)
    page = render(view, now_ms=2)
    assert "<script>x" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "<b>py</b>" not in page
    assert "/v1/executions/%3Cscript%3Ex%3C%2Fscript%3E/logs" in page


async def test_the_route_is_served_and_shows_only_the_callers_tenant() -> None:
    live = LiveView(Settings())
    live.ready.set()
    finished(live.view, "mine", State.SUCCEEDED, 10, tenant="alice")
    finished(live.view, "theirs", State.FAILED, 10, tenant="bob")
    keys = KeyRing({hash_key("alice-key"): "alice"})
    services = Services(
        settings=Settings(),
        sink=MemorySink(True),
        live=live,
        languages=NoLanguages(),
        keys=keys,
        limiter=RateLimiter(per_min=600, burst=100),
        language_names=frozenset({"python"}),
    )
    transport = httpx.ASGITransport(app=build_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        assert (await client.get("/")).status_code == 401
        response = await client.get("/", headers={"Authorization": "Bearer alice-key"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "mine" in response.text and "theirs" not in response.text
