"""The pure rules of batches (core/batches.py) and the gateway's batch index."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from core.batches import item_field, member_id, state_counts
from core.provenance import files_sha256, sha256_hex
from gateway.batch_index import BatchIndex


def test_item_fields_name_the_item_and_its_field() -> None:
    assert item_field(3, "language") == "executions[3].language"
    assert item_field(0, "limits.memory_mib") == "executions[0].limits.memory_mib"
    assert item_field(2, None) == "executions[2]"


def test_member_ids_are_stable_and_distinct() -> None:
    assert member_id("b", 0) == member_id("b", 0) == "b-0"
    assert len({member_id("b", i) for i in range(1000)}) == 1000


@given(st.lists(st.sampled_from(["SUCCEEDED", "FAILED", "QUEUED", "ERROR"])))
def test_counts_add_up(states: list[str]) -> None:
    counts = state_counts(states)
    assert sum(counts.values()) == len(states) and list(counts) == sorted(counts)
    assert all(counts[s] == states.count(s) for s in counts)


def test_hashes_are_sha256_of_the_utf8_text() -> None:
    assert sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert files_sha256({"b.txt": "", "a.txt": "é"}) == {"a.txt": sha256_hex("é"), "b.txt": sha256_hex("")}


@dataclass
class Rec:
    id: str
    tenant: str = "acme"
    batch_id: str | None = "b1"


def test_the_index_keeps_members_in_order_and_forgets_an_empty_batch() -> None:
    index = BatchIndex()
    a, b, loose = Rec("a"), Rec("b"), Rec("c", batch_id=None)
    for r in (a, b, a, loose):
        index.add(r)
    assert index.members("b1") == ["a", "b"] and index.tenant("b1") == "acme" and len(index) == 1
    index.forget(a)
    assert index.members("b1") == ["b"]
    index.forget(b)
    index.forget(None)
    assert index.members("b1") == [] and index.tenant("b1") is None and len(index) == 0
