"""The view's batch index (pure): a batch produced straight to Kafka is known from the requests its
events carry, members keep their order, and retention takes members (and then the batch) away."""

from __future__ import annotations

from gateway.view import Retention, View
from streams.records import ExecutionEvent, ExecutionRequest, ExecutionResult
from streams.states import State


def requested(execution_id: str, batch_id: str | None, tenant: str = "acme", at_ms: int = 1) -> ExecutionEvent:
    request = ExecutionRequest(id=execution_id, language="python", code="1", tenant=tenant, batch_id=batch_id)
    return ExecutionEvent(
        execution_id=execution_id, seq=0, state=State.REQUESTED, at_ms=at_ms, tenant=tenant, request=request.encode()
    )


def finished(execution_id: str, at_ms: int) -> ExecutionResult:
    return ExecutionResult(
        id=execution_id,
        language="python",
        tenant="acme",
        state=State.SUCCEEDED,
        created_at_ms=1,
        finished_at_ms=at_ms,
        batch_id="k",
    )


def test_a_kafka_batch_is_indexed_from_its_requests_and_pruned_with_its_members() -> None:
    view = View(Retention(max_executions=2))
    for i in (2, 0, 1):
        view.fold_event(requested(f"k-{i}", "k"))
    view.fold_event(requested("loose", None))
    assert view.batches.members("k") == ["k-2", "k-0", "k-1"] and view.batches.tenant("k") == "acme"
    assert view.get("k-0") is not None and view.get("k-0").batch_id == "k"  # type: ignore[union-attr]
    for i, at_ms in ((2, 10), (0, 11), (1, 12)):
        view.fold_result(finished(f"k-{i}", at_ms))
    # Two finished ones are kept: the oldest left the view, and the batch index with it.
    assert view.batches.members("k") == ["k-0", "k-1"]
    view.retention = Retention(max_executions=0)
    view.prune(13)
    assert view.batches.members("k") == [] and view.batches.tenant("k") is None


def test_a_batch_belongs_to_its_first_members_tenant() -> None:
    # (GET /v1/batches/{id} lists only the caller's own members of it: gateway/batches_api.py.)
    view = View()
    view.fold_event(requested("a-0", "shared", tenant="acme"))
    view.fold_event(requested("g-0", "shared", tenant="globex"))
    assert view.batches.tenant("shared") == "acme"
    assert [view.get(i).tenant for i in view.batches.members("shared")] == ["acme", "globex"]  # type: ignore[union-attr]
