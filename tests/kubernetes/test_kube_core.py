"""The pure core of the Kubernetes backend: manifests, outcome mapping, and the watch loop's decisions.
No API server here: these run everywhere, in milliseconds."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.errors import InvalidRequest
from runtime.kube_client import JsonObject, KubeApiError, Query
from runtime.kube_manifest import (
    KubernetesConfig,
    active_deadline_s,
    build_configmap,
    build_job,
    check_file_name,
    job_name,
    label_value,
)
from runtime.kube_outcome import decide, next_check_at, observe_job, observe_pod
from runtime.kube_watch import Informer
from runtime.kubernetes import KubernetesHostManager
from runtime.languages.base import Language
from runtime.languages.python import PYTHON
from runtime.types import Limits, RunRequest
from streams.states import Limit, State

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
T0 = "2026-01-01T00:00:00Z"
T0_S = 1767225600.0

COMPILED = Language(
    name="c",
    source_file="main.c",
    run=("./main",),
    compile=("/usr/bin/cc", "-O2", "-o", "main", "{source}"),
    version_probe=("/usr/bin/cc", "--version"),
    self_test_code="",
    self_test_stdin=b"",
    self_test_expected_stdout=b"",
)


@given(st.text(min_size=1, max_size=200))
def test_names_are_valid_and_stable(execution_id: str) -> None:
    name = job_name(execution_id)
    assert len(name) <= 63 and DNS_LABEL.match(name)
    assert job_name(execution_id) == name
    value = label_value(execution_id)
    assert len(value) <= 63 and LABEL_VALUE.match(value)


def test_distinct_ids_that_slug_alike_get_distinct_names() -> None:
    assert job_name("Run_1") != job_name("run-1")
    assert label_value("a" * 64) != label_value("a" * 65)


@pytest.mark.parametrize("name", ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\x00", "..hidden/x", "a\\b"])
def test_bad_file_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidRequest):
        check_file_name(name)


def test_a_compiled_language_compiles_in_an_init_container() -> None:
    req = RunRequest("e1", "c", "int main(){}", stdin=b"in", limits=Limits(wall_time_ms=2000))
    config = KubernetesConfig(images={"c": "runner-c:12"}, deadline_slack_ms=1000)
    job = build_job(req, COMPILED, config)
    pod = job["spec"]["template"]["spec"]
    (compile_c,) = pod["initContainers"]
    (run_c,) = pod["containers"]
    assert compile_c["name"] == "compile" and compile_c["command"][-5:] == [
        "/usr/bin/cc",
        "-O2",
        "-o",
        "main",
        "main.c",
    ]
    assert "cp -RL" in compile_c["command"][2] and "cp -RL" not in run_c["command"][2]
    assert run_c["command"][-1] == "./main" and "< /input/stdin" in run_c["command"][2]
    # wall 2 s + compile 15 s + slack 1 s
    assert job["spec"]["activeDeadlineSeconds"] == active_deadline_s(req.limits, COMPILED, config) == 18


def test_input_too_large_or_without_image_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="at most"):
        build_job(RunRequest("e", "python", "x" * 800_000), PYTHON, KubernetesConfig())
    with pytest.raises(InvalidRequest, match="no runner image"):
        build_job(RunRequest("e", "python", "1"), PYTHON, KubernetesConfig(images={}))
    with pytest.raises(InvalidRequest, match="reserved"):
        build_job(RunRequest("e", "python", "1", files={"main.py": ""}), PYTHON, KubernetesConfig())


def test_configmap_is_owned_by_the_job() -> None:
    cm = build_configmap(RunRequest("e", "python", "1"), PYTHON, KubernetesConfig(), "uid-1")
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "uid-1" and cm["immutable"] is True


def pod(
    *,
    phase: str = "Running",
    run: dict[str, Any] | None = None,
    compile_: dict[str, Any] | None = None,
    reason: str = "",
    unschedulable: bool = False,
) -> JsonObject:
    statuses = []
    if run is not None:
        statuses.append({"name": "run", "state": run})
    status: JsonObject = {"phase": phase, "containerStatuses": statuses, "reason": reason}
    if compile_ is not None:
        status["initContainerStatuses"] = [{"name": "compile", "state": compile_}]
    if unschedulable:
        status["conditions"] = [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "full"}
        ]
    return {"metadata": {"name": "p", "labels": {}}, "status": status}


def job(*conditions: tuple[str, str], deadline_s: int = 10) -> JsonObject:
    conds = [
        {"type": t, "status": "True", "reason": r, "lastTransitionTime": "2026-01-01T00:00:10Z"} for t, r in conditions
    ]
    return {
        "metadata": {"name": "j", "uid": "u", "creationTimestamp": T0, "annotations": {}, "labels": {}},
        "spec": {"activeDeadlineSeconds": deadline_s},
        "status": {"conditions": conds},
    }


def ended(code: int, reason: str = "", finished: str = "2026-01-01T00:00:05Z") -> dict[str, Any]:
    return {
        "terminated": {"exitCode": code, "reason": reason, "startedAt": "2026-01-01T00:00:01Z", "finishedAt": finished}
    }


RUNNING = {"running": {"startedAt": "2026-01-01T00:00:01Z"}}
ERROR = (State.ERROR, None, None, None)
WALL = (State.LIMIT_EXCEEDED, Limit.WALL_TIME)


def waiting(reason: str) -> JsonObject:
    return pod(phase="Pending", run={"waiting": {"reason": reason}})


@pytest.mark.parametrize(
    ("job_obj", "pod_obj", "now", "want"),
    [
        (job(), pod(run=RUNNING), T0_S + 1, None),
        (job(), pod(run=ended(0)), T0_S + 6, (State.SUCCEEDED, None, 0, None)),
        (job(), pod(run=ended(2)), T0_S + 6, (State.FAILED, None, 2, None)),
        (job(), pod(run=ended(137, "OOMKilled")), T0_S + 6, (State.LIMIT_EXCEEDED, Limit.MEMORY, None, 9)),
        # gVisor: the OOM killer ended the whole sandbox, whose status is unknown (128)
        (job(), pod(run=ended(128, "OOMKilled")), T0_S + 6, (State.LIMIT_EXCEEDED, Limit.MEMORY, None, 9)),
        (job(), pod(run=ended(128, "Error")), T0_S + 6, (State.FAILED, None, 128, None)),
        (job(), pod(run=ended(143)), T0_S + 6, (State.FAILED, None, None, 15)),
        (job(), pod(run=ended(153)), T0_S + 6, (State.LIMIT_EXCEEDED, Limit.DISK, None, 25)),
        (job(), pod(compile_=ended(1), phase="Failed"), T0_S + 6, (State.COMPILE_ERROR, None, 1, None)),
        (job(("FailureTarget", "DeadlineExceeded")), pod(run=RUNNING), T0_S + 11, (*WALL, None, None)),
        # killed by the deadline: the kill's 137 is not the program's end
        (job(("Failed", "DeadlineExceeded")), pod(run=ended(137, "Error", "2026-01-01T00:00:11Z")), T0_S + 12,
         (*WALL, None, 9)),
        # the program ended before the deadline hit: its own end counts
        (job(("Failed", "DeadlineExceeded")), pod(run=ended(3)), T0_S + 12, (State.FAILED, None, 3, None)),
        (job(("Failed", "DeadlineExceeded")), pod(phase="Pending"), T0_S + 12, ERROR),
        (job(("Complete", "")), None, T0_S + 6, (State.SUCCEEDED, None, 0, None)),
        (None, None, T0_S + 6, ERROR),
        (job(), pod(phase="Failed", reason="Evicted"), T0_S + 6, ERROR),
        (job(), pod(phase="Pending", unschedulable=True), T0_S + 5, None),
        (job(), pod(phase="Pending", unschedulable=True), T0_S + 61, ERROR),
        (job(deadline_s=100), waiting("ImagePullBackOff"), T0_S + 59, None),
        (job(deadline_s=100), waiting("ImagePullBackOff"), T0_S + 61, ERROR),
        (job(), waiting("InvalidImageName"), T0_S + 1, ERROR),
        (job(), None, T0_S + 61, ERROR),
        (job(deadline_s=10), pod(run=RUNNING), T0_S + 41, ERROR),
    ],
)  # fmt: skip
def test_decide(
    job_obj: JsonObject | None, pod_obj: JsonObject | None, now: float, want: tuple[Any, ...] | None
) -> None:
    decision = decide(
        observe_job(job_obj) if job_obj else None, observe_pod(pod_obj) if pod_obj else None, now, 60.0, 30.0
    )
    got = None if decision is None else (decision.state, decision.limit, decision.exit_code, decision.signal)
    assert got == want
    if decision is not None and decision.state is State.ERROR:
        assert decision.error


def test_next_check_is_the_nearest_timeout() -> None:
    j = observe_job(job(deadline_s=10))
    assert next_check_at(j, None, 60.0, 30.0) == T0_S + 40  # the deadline plus grace comes first
    assert next_check_at(j, observe_pod(pod(run=RUNNING)), 5.0, 30.0) == T0_S + 40
    assert next_check_at(j, observe_pod(pod(phase="Pending")), 5.0, 30.0) == T0_S + 5


class ScriptedClient:
    """A KubeClient that answers lists and watches from a script (for the watch loop's decisions only)."""

    def __init__(self, watches: list[list[JsonObject] | Exception]) -> None:
        self.watches = watches
        self.list_calls = 0
        self.watch_queries: list[dict[str, Any]] = []

    async def request(
        self, method: str, path: str, *, query: Query | None = None, body: JsonObject | None = None,
        content_type: str = "application/json",
    ) -> JsonObject:  # fmt: skip
        self.list_calls += 1
        rv = str(100 * self.list_calls)
        return {
            "metadata": {"resourceVersion": rv},
            "items": [{"metadata": {"name": f"listed-{rv}", "resourceVersion": rv}}],
        }

    async def watch(self, path: str, query: Query, read_timeout_s: float) -> AsyncIterator[JsonObject]:
        self.watch_queries.append(dict(query))
        step = self.watches.pop(0) if self.watches else []
        if isinstance(step, Exception):
            raise step
        for event in step:
            yield event
        if not self.watches:
            await asyncio.sleep(3600)

    async def read_bytes(self, path: str, *, query: Query | None = None) -> bytes:
        return b""

    async def stream_bytes(self, path: str, query: Query, read_timeout_s: float) -> AsyncIterator[bytes]:
        yield b""

    async def close(self) -> None:
        return None


async def test_informer_relists_after_410_and_delivers_the_gap() -> None:
    events: list[tuple[str, str]] = []
    client = ScriptedClient(
        [
            [{"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "101"}}}],
            [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}],
            KubeApiError(410, "Gone"),
        ]
    )
    informer = Informer(
        "pods", client, "/p", "x=y", lambda t, o: events.append((t, o["metadata"]["name"])), timeout_s=5
    )
    task = asyncio.create_task(informer.run())
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert informer.stats.expired == 2 and client.list_calls == 3
    # The first watch starts from the list's resourceVersion, the next from the last event's.
    assert [q.get("resourceVersion") for q in client.watch_queries[:3]] == ["100", "101", "200"]
    # Each relist replaces the cache: what vanished is reported deleted.
    assert ("DELETED", "listed-100") in events and ("DELETED", "a") in events
    assert set(informer.objects) == {"listed-300"}


async def test_informer_backs_off_instead_of_spinning() -> None:
    client = ScriptedClient([KubeApiError(500, "boom")] * 1000)
    informer = Informer("pods", client, "/p", "", lambda t, o: None, backoff_initial_ms=50, backoff_max_ms=200)
    task = asyncio.create_task(informer.run())
    await asyncio.sleep(1.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # 50 + 100 + 200 + 200 + ... ms: about 6 attempts in a second, never hundreds.
    assert 3 <= len(client.watch_queries) <= 8
    assert informer.stats.errors == len(client.watch_queries)
    # Every failure is followed by a fresh list: a watch never retries a resourceVersion that failed.
    assert client.list_calls == len(client.watch_queries)


def test_a_job_end_that_outruns_the_pod_end_waits_for_the_pod() -> None:
    """Jobs and pods come on two watches: the Job's Complete can arrive before the pod's exit code."""
    complete = observe_job(job(("Complete", "")))
    assert decide(complete, observe_pod(pod(run=RUNNING)), T0_S + 6, 60.0, 30.0) is None
    last = decide(complete, observe_pod(pod(run=RUNNING), gone=True), T0_S + 6, 60.0, 30.0)
    assert last is not None and (last.state, last.exit_code) == (State.SUCCEEDED, 0)
    failed = observe_job(job(("Failed", "BackoffLimitExceeded")))
    assert decide(failed, observe_pod(pod(run=RUNNING)), T0_S + 6, 60.0, 30.0) is None
    ended_pod = decide(failed, observe_pod(pod(run=ended(5), phase="Failed")), T0_S + 6, 60.0, 30.0)
    assert ended_pod is not None and (ended_pod.state, ended_pod.exit_code) == (State.FAILED, 5)


async def test_an_unreachable_api_server_is_an_error_not_a_hang(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {{server: 'https://127.0.0.1:{port}'}}\n"
        "users:\n- name: u\n  user: {token: t}\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\n"
        "current-context: x\n"
    )
    config = KubernetesConfig(status_grace_ms=1500, watch_backoff_initial_ms=100)
    manager = await KubernetesHostManager.from_kubeconfig(str(kubeconfig), config)
    try:
        outcome = await asyncio.wait_for(manager.run(RunRequest("e", "python", "print(1)")), 10)
    finally:
        await manager.close()
    assert outcome.state is State.ERROR
    assert outcome.error is not None and "did not list" in outcome.error


def test_label_values_are_matched_whole() -> None:
    from runtime.kube_manifest import label_value

    assert label_value("abc") == "abc"
    assert label_value("abc\n") != "abc\n" and label_value("abc\n").startswith("h-")


def test_runner_images_from_the_setting() -> None:
    from runtime.kube_manifest import parse_images

    assert parse_images("", "python,c") == {}
    assert parse_images("img:1", "python, c") == {"python": "img:1", "c": "img:1"}
    assert parse_images("python=a:1,c=b:2", "bash") == {"python": "a:1", "c": "b:2"}
    with pytest.raises(ValueError, match="'python' is not lang=IMAGE"):
        parse_images("python,c=b", "bash")
