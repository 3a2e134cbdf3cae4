"""The HTTP client the CLI uses: plain httpx, an SSE line parser, and the language-by-extension table."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.errors import ApiError, GatewayUnavailable
from streams.settings import Settings

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".js": "javascript",
    ".mjs": "javascript",
    ".ts": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".c": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".java": "java",
    ".cs": "csharp",
    ".sh": "bash",
}


def gateway_url(settings: Settings) -> str:
    """Where clients find the gateway: AEVATAR_GATEWAY_URL, else from the host and port it binds."""
    if settings.gateway_url:
        return settings.gateway_url.rstrip("/")
    host = settings.gateway_host
    if host in {"0.0.0.0", "::", ""}:
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.gateway_port}"


def language_for(path: Path) -> str | None:
    return EXTENSIONS.get(path.suffix.lower())


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


def parse_sse(lines: Iterable[str]) -> Iterator[SseEvent]:
    """Server-sent events from a stream's lines (per the HTML spec: blank line ends an event)."""
    event, ident = "message", None
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent(event, "\n".join(data), ident)
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            ident = value
    if data:
        yield SseEvent(event, "\n".join(data), ident)


def exit_code_for(execution: dict[str, Any]) -> int:
    """The exit code `aevatar-sandbox run` ends with: the program's, 128+signal, else 1."""
    if execution.get("exit_code") is not None:
        return int(execution["exit_code"])
    if execution.get("signal") is not None:
        return 128 + int(execution["signal"])
    return 0 if execution.get("state") == "SUCCEEDED" else 1


# A 429 is retried after its Retry-After (capped per wait), until this much waiting in all.
RETRY_BUDGET_S = 120.0
RETRY_AFTER_CAP_S = 30.0


def retry_after_s(response: httpx.Response) -> float:
    """The wait a 429 asks for: its Retry-After in seconds (an HTTP date or nonsense counts as 1), capped."""
    try:
        wait = float(response.headers.get("retry-after", "1"))
    except ValueError:
        wait = 1.0
    return min(max(wait, 0.0), RETRY_AFTER_CAP_S)


class GatewayClient:
    """The gateway's REST and SSE API. A 429 is waited out (its Retry-After) and the call repeated,
    for up to `retry_budget_s` of waiting; then it raises ApiError as any refusal."""

    def __init__(
        self,
        url: str,
        api_key: str = "",
        timeout_s: float = 30.0,
        *,
        retry_budget_s: float = RETRY_BUDGET_S,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url
        self.retry_budget_s = retry_budget_s
        self._sleep = sleep
        # A plain-HTTP gateway (the loopback default) never makes a TLS connection here: only relative
        # paths on that base, redirects not followed. So no CA bundle is loaded for it (~65 ms at start).
        verify = not url.startswith("http://")
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout_s, verify=verify)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        waited_s = 0.0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise GatewayUnavailable(
                    f"no gateway is running at {self.url} "
                    "(start it with `aevatar-sandbox gateway` or `aevatar-sandbox up`)"
                ) from exc
            if not self._waited_out(response, waited_s):
                return _checked(response)
            waited_s += retry_after_s(response)

    def _waited_out(self, response: httpx.Response, waited_s: float) -> bool:
        """True when `response` is a 429 within the retry budget, after sleeping its Retry-After."""
        if response.status_code != 429:
            return False
        wait = retry_after_s(response)
        if waited_s + wait > self.retry_budget_s:
            return False
        self._sleep(wait)
        return True

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/v1/executions", json=body)
        return result

    def get(self, execution_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/v1/executions/{execution_id}")
        return result

    def languages(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/v1/languages")
        return result

    def cancel(self, execution_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/v1/executions/{execution_id}/cancel")
        return result

    def logs(self, execution_id: str, last_event_id: str | None = None) -> Iterator[SseEvent]:
        """The execution's SSE log stream, resuming across dropped connections, until its `end` event."""
        reconnects = 0
        waited_s = 0.0
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            try:
                with self._http.stream(
                    "GET", f"/v1/executions/{execution_id}/logs", headers=headers, timeout=httpx.Timeout(30, read=60)
                ) as response:
                    if response.status_code >= 400:
                        response.read()
                        if self._waited_out(response, waited_s):  # too many streams open: one ends soon
                            waited_s += retry_after_s(response)
                            continue
                        _checked(response)
                    for event in parse_sse(response.iter_lines()):
                        if event.id:
                            last_event_id = event.id
                        yield event
                        if event.event == "end":
                            return
            except httpx.TransportError as exc:
                reconnects += 1
                if reconnects > 5:
                    raise GatewayUnavailable(f"lost the gateway at {self.url}: {exc}") from exc
                continue


def _checked(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        detail = body.get("error", {}) if isinstance(body, dict) else {}
        raise ApiError(
            response.status_code,
            str(detail.get("code", "http_error")),
            str(detail.get("message", response.text[:200] or response.reason_phrase)),
            detail.get("field"),
        )
    return body
