"""List-then-watch of one kind of object, kept in a local cache (the edge; its decisions are tiny).

The loop: list (which gives a resourceVersion), then watch from that resourceVersion with a
server-side timeout; when a watch ends, re-open it from the last resourceVersion seen (bookmarks
keep it fresh). When the server says the resourceVersion has expired (410 Gone, as an HTTP status
or as an ERROR event), list again: the list replaces the cache, and every difference is delivered
as an event, so nothing that happened during the gap is lost. Any other failure also ends in a
list, after an exponential back-off up to a cap; a watch that ends at once without an event backs
off too, so there is never a tight loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from runtime.kube_client import JsonObject, KubeApiError, KubeClient

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
OnChange = Callable[[EventType, JsonObject], None]


class Expired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


@dataclass(slots=True)
class WatchStats:
    lists: int = 0  # full lists (the first one, and one after each expiry)
    expired: int = 0  # 410 Gone answers
    watches: int = 0  # watch requests opened
    errors: int = 0  # failures that were backed off from


def _key(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return str(meta.get("name", ""))


def _rv(obj: Mapping[str, Any]) -> str | None:
    meta = obj.get("metadata") or {}
    rv = meta.get("resourceVersion")
    return str(rv) if rv else None


class Informer:
    """Keeps `objects` (name → latest object) in step with the API server and reports each change."""

    def __init__(
        self,
        kind: str,
        client: KubeClient,
        path: str,
        label_selector: str,
        on_change: OnChange,
        *,
        timeout_s: int = 240,
        backoff_initial_ms: int = 250,
        backoff_max_ms: int = 10_000,
    ) -> None:
        self.kind = kind
        self._client = client
        self.path = path  # the collection, e.g. /api/v1/namespaces/<ns>/pods
        self.label_selector = label_selector
        self._on_change = on_change
        self.timeout_s = timeout_s
        self.backoff_initial_ms = backoff_initial_ms
        self.backoff_max_ms = backoff_max_ms
        self.objects: dict[str, JsonObject] = {}
        self.resource_version: str | None = None
        self.synced = asyncio.Event()
        self.stats = WatchStats()
        self.last_error: str | None = None

    async def run(self) -> None:
        """Until cancelled."""
        backoff_ms = self.backoff_initial_ms
        while True:
            try:
                if self.resource_version is None:
                    await self._relist()
                got_events = await self._watch_once()
                if got_events:
                    backoff_ms = self.backoff_initial_ms
                    continue
                # An empty watch that lasted its full timeout is normal; one that ended at once is not.
            except Expired:
                self.stats.expired += 1
                self.resource_version = None
                continue
            except (KubeApiError, TimeoutError, OSError, ValueError) as exc:
                if isinstance(exc, KubeApiError) and exc.status == 410:
                    self.stats.expired += 1
                    self.resource_version = None
                    continue
                self.stats.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                # After a failure, trust nothing: list again (after the back-off). Re-watching from the
                # same resourceVersion can fail for ever, e.g. the API server's 500 "etcd event received
                # with PrevKv=nil" for a revision whose previous value was compacted away.
                self.resource_version = None
            await asyncio.sleep(backoff_ms / 1000)
            backoff_ms = min(self.backoff_max_ms, backoff_ms * 2)

    async def _relist(self) -> None:
        listed = await self._client.request("GET", self.path, query={"labelSelector": self.label_selector})
        self.stats.lists += 1
        items = [i for i in listed.get("items") or [] if isinstance(i, dict)]
        fresh = {_key(i): i for i in items}
        for name in [n for n in self.objects if n not in fresh]:
            self._on_change("DELETED", self.objects.pop(name))
        for name, obj in fresh.items():
            event: EventType = "MODIFIED" if name in self.objects else "ADDED"
            self.objects[name] = obj
            self._on_change(event, obj)
        self.resource_version = str((listed.get("metadata") or {}).get("resourceVersion") or "") or None
        self.synced.set()

    async def _watch_once(self) -> bool:
        """One watch request; True if it delivered at least one event (bookmarks count)."""
        self.stats.watches += 1
        started = asyncio.get_running_loop().time()
        query: dict[str, str | int | bool] = {
            "labelSelector": self.label_selector,
            "timeoutSeconds": self.timeout_s,
            "allowWatchBookmarks": True,
        }
        if self.resource_version is not None:
            query["resourceVersion"] = self.resource_version
        got = False
        async for event in self._client.watch(self.path, query, self.timeout_s + 30):
            self._apply(event)
            got = True
        # A watch that ran its course is fine even without events; only an instant end counts as trouble.
        return got or asyncio.get_running_loop().time() - started >= self.timeout_s / 2

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            raise ValueError(f"malformed watch event from the {self.kind} watch")
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise Expired()
            raise KubeApiError(int(code or 500), f"{obj.get('reason', '')}: {obj.get('message', '')}")
        rv = _rv(obj)
        if rv is not None:
            self.resource_version = rv
        if kind == "BOOKMARK":
            return
        name = _key(obj)
        if kind == "DELETED":
            self.objects.pop(name, None)
            self._on_change("DELETED", obj)
        elif kind in {"ADDED", "MODIFIED"}:
            known = name in self.objects
            self.objects[name] = obj
            self._on_change("MODIFIED" if known else "ADDED", obj)
