"""The status page at `/`: live counts by state and the latest executions, as one small HTML page.

No front-end build: the page is rendered here, refreshes itself every few seconds, and links each
execution to its log stream. `render` is pure; `page` is the route. Every value that came from a
request (ids, languages) is escaped. The page obeys the same authentication as /v1, and a caller
with a key sees only its own tenant's executions.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Iterable
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from gateway.view import ExecutionRecord, iso_utc
from streams.states import State

REFRESH_S = 5
LATEST = 25
_ORDER = list(State)  # the state machine's own order: pipeline states, then terminal ones
_COLOURS = {
    State.SUCCEEDED: "#1a7f37",
    State.FAILED: "#cf222e",
    State.COMPILE_ERROR: "#cf222e",
    State.LIMIT_EXCEEDED: "#bc4c00",
    State.ERROR: "#8250df",
    State.REJECTED: "#6e7781",
    State.CANCELLED: "#6e7781",
}
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#1f2328;background:#fff}
h1{font-size:1.4rem;margin:0 0 .2rem}
p.sub{color:#656d76;margin:0 0 1.2rem}
.counts{display:flex;flex-wrap:wrap;gap:.6rem;margin-bottom:1.5rem}
.count{border:1px solid #d0d7de;border-radius:6px;padding:.5rem .8rem;min-width:6.5rem}
.count b{display:block;font-size:1.4rem}
.count span{color:#656d76;font-size:.8rem}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid #d8dee4}
th{background:#f6f8fa;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code{font:12px ui-monospace,monospace}
.state{font-weight:600}
"""


def latency_ms(record: ExecutionRecord) -> int | None:
    """End-to-end latency of a finished execution (None while it runs)."""
    if not record.finished:
        return None
    execution = record.execution()
    return execution.timings.total_ms


def _sort_key(record: ExecutionRecord) -> int:
    if record.created_at_ms is not None:
        return record.created_at_ms
    return record.events[0].at_ms if record.events else 0


def render(records: Iterable[ExecutionRecord], *, now_ms: int, latest: int = LATEST) -> str:
    """The page for these records: counts by state, then the `latest` newest executions."""
    records = list(records)
    counts = Counter(r.state for r in records)
    tiles = "".join(
        f'<div class="count" id="count-{s.value}"><b>{counts.get(s, 0)}</b><span>{s.value}</span></div>' for s in _ORDER
    )
    rows = []
    for record in sorted(records, key=_sort_key, reverse=True)[:latest]:
        state = record.state
        colour = _COLOURS.get(state, "#0969da")
        took = latency_ms(record)
        ident = html.escape(record.id)
        logs = f"/v1/executions/{quote(record.id, safe='')}/logs"
        rows.append(
            "<tr>"
            f"<td><code>{ident}</code></td>"
            f"<td>{html.escape(record.language or '-')}</td>"
            f'<td class="state" style="color:{colour}">{state.value}</td>'
            f'<td class="num">{"-" if took is None else f"{took} ms"}</td>'
            f"<td>{html.escape(iso_utc(record.created_at_ms) or '-')}</td>"
            f'<td><a href="{html.escape(logs)}">log stream</a></td>'
            "</tr>"
        )
    body = "".join(rows) or '<tr><td colspan="6">no executions yet</td></tr>'
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        "<title>Aevatar Sandbox status</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Aevatar Sandbox</h1>"
        f'<p class="sub">{len(records)} executions known &middot; as of {iso_utc(now_ms)} &middot; '
        f"refreshes every {REFRESH_S} s &middot; <a href=/metrics>metrics</a></p>"
        f'<div class="counts">{tiles}</div>'
        "<table><thead><tr><th>Execution</th><th>Language</th><th>State</th><th>Latency</th>"
        f"<th>Created</th><th>Logs</th></tr></thead><tbody>{body}</tbody></table>"
        "</body></html>"
    )


async def page(request: Request) -> Response:
    from gateway.app import _services, _visible, guard

    services = _services(request)
    principal = guard(request)
    visible = [r for r in services.live.view if _visible(services, r, principal)]
    return HTMLResponse(render(visible, now_ms=time.time_ns() // 1_000_000), headers={"Cache-Control": "no-store"})
