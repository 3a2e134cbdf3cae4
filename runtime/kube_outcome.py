"""Pure: read a sandbox Job and its pod as the API server reports them, and decide how the run ended.

`observe_job` and `observe_pod` turn raw API objects (JSON dicts) into small views; `decide` maps
the views, the time and the start timeout to a `Decision`, or None while the run is still going.
Times are epoch seconds (float), as `time.time()` gives them.

Mapping (DESIGN.md's terminal states):
- the run container terminated: exit 0 → SUCCEEDED; reason OOMKilled → LIMIT_EXCEEDED memory;
  anything else → FAILED, with the exit code or the signal;
- the compile init container terminated non-zero → COMPILE_ERROR;
- the Job failed with DeadlineExceeded (activeDeadlineSeconds) → LIMIT_EXCEEDED wall_time, if the
  program had started; if it never started, that is the platform's fault → ERROR;
- a pod that does not start within the start timeout (ImagePullBackOff, Unschedulable, ...) → ERROR,
  with the reason; so does a pod that fails without a container end (Evicted, ...).
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime.kube_frames import RunnerEnd
from runtime.kube_manifest import ANNOTATION_EXECUTION, CONTAINER_COMPILE, CONTAINER_RUN, LABEL_EXECUTION
from streams.states import Limit, State

# Waiting reasons that no amount of waiting fixes.
HOPELESS_WAITING = frozenset({"InvalidImageName", "ErrImageNeverPull"})
DEADLINE_REASON = "DeadlineExceeded"
OOM_REASON = "OOMKilled"


def parse_time(value: object) -> float | None:
    """An RFC 3339 timestamp from the API (`2024-01-02T03:04:05Z`) as epoch seconds."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ContainerEnd:
    exit_code: int
    signal: int | None
    reason: str
    message: str
    started_at: float | None
    finished_at: float | None

    @property
    def ms(self) -> int:
        if self.started_at is None or self.finished_at is None:
            return 0
        return max(0, int((self.finished_at - self.started_at) * 1000))


@dataclass(frozen=True, slots=True)
class PodView:
    name: str
    execution_label: str
    phase: str
    reason: str
    message: str
    deleting: bool
    gone: bool  # deleted: no newer state will come
    started: bool  # a container of the run has been running (or has ended)
    run_started: bool  # the run container itself (not the compile step) has been running
    run_end: ContainerEnd | None
    compile_end: ContainerEnd | None
    waiting: str | None  # "Reason: message" of a container that waits to start
    waiting_reason: str | None
    unschedulable: str | None  # the PodScheduled=False message


@dataclass(frozen=True, slots=True)
class JobView:
    name: str
    uid: str
    execution_id: str
    execution_label: str
    created_at: float | None
    deadline_s: int
    failed_reason: str | None  # of a Failed or FailureTarget condition
    failed_message: str
    failed_at: float | None
    complete: bool
    deleting: bool


@dataclass(frozen=True, slots=True)
class Decision:
    state: State
    limit: Limit | None
    exit_code: int | None
    signal: int | None
    error: str | None = None
    stop_job: bool = False  # the Job may still be running: delete it


def _dict(obj: object) -> Mapping[str, Any]:
    return obj if isinstance(obj, Mapping) else {}


def _list(obj: object) -> list[Any]:
    return obj if isinstance(obj, list) else []


def _end(state: Mapping[str, Any]) -> ContainerEnd | None:
    term = _dict(state.get("terminated"))
    if not term:
        return None
    sig = term.get("signal")
    return ContainerEnd(
        exit_code=int(term.get("exitCode", 0)),
        signal=int(sig) if isinstance(sig, int) and sig > 0 else None,
        reason=str(term.get("reason") or ""),
        message=str(term.get("message") or ""),
        started_at=parse_time(term.get("startedAt")),
        finished_at=parse_time(term.get("finishedAt")),
    )


def observe_pod(raw: Mapping[str, Any], gone: bool = False) -> PodView:
    """`gone`: this is the pod's last state, from its DELETED event."""
    meta, status = _dict(raw.get("metadata")), _dict(raw.get("status"))
    statuses = [_dict(s) for s in _list(status.get("initContainerStatuses")) + _list(status.get("containerStatuses"))]
    by_name = {str(s.get("name")): s for s in statuses}
    started = False
    waiting: str | None = None
    waiting_reason: str | None = None
    for s in statuses:
        state, last = _dict(s.get("state")), _dict(s.get("lastState"))
        if state.get("running") or state.get("terminated") or last.get("terminated"):
            started = True
        wait = _dict(state.get("waiting"))
        reason = str(wait.get("reason") or "")
        if reason and reason not in {"PodInitializing", "ContainerCreating"}:
            waiting_reason = reason
            waiting = f"{reason}: {wait.get('message') or ''}".rstrip(": ")
    unschedulable = None
    for cond in _list(status.get("conditions")):
        c = _dict(cond)
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            unschedulable = str(c.get("message") or "Unschedulable")
    return PodView(
        name=str(meta.get("name") or ""),
        execution_label=str(_dict(meta.get("labels")).get(LABEL_EXECUTION) or ""),
        phase=str(status.get("phase") or "Pending"),
        reason=str(status.get("reason") or ""),
        message=str(status.get("message") or ""),
        deleting=meta.get("deletionTimestamp") is not None,
        gone=gone,
        started=started,
        run_started=bool(
            _dict(_dict(by_name.get(CONTAINER_RUN, {})).get("state")).get("running")
            or _dict(_dict(by_name.get(CONTAINER_RUN, {})).get("state")).get("terminated")
        ),
        run_end=_end(_dict(by_name.get(CONTAINER_RUN, {}).get("state"))),
        compile_end=_end(_dict(by_name.get(CONTAINER_COMPILE, {}).get("state"))),
        waiting=waiting,
        waiting_reason=waiting_reason,
        unschedulable=unschedulable,
    )


def observe_job(raw: Mapping[str, Any]) -> JobView:
    meta, spec, status = _dict(raw.get("metadata")), _dict(raw.get("spec")), _dict(raw.get("status"))
    failed_reason: str | None = None
    failed_message = ""
    failed_at: float | None = None
    complete = False
    for cond in _list(status.get("conditions")):
        c = _dict(cond)
        if c.get("status") != "True":
            continue
        if c.get("type") in {"Failed", "FailureTarget"} and failed_reason is None:
            failed_reason = str(c.get("reason") or "Failed")
            failed_message = str(c.get("message") or "")
            failed_at = parse_time(c.get("lastTransitionTime"))
        elif c.get("type") == "Complete":
            complete = True
    return JobView(
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        execution_id=str(_dict(meta.get("annotations")).get(ANNOTATION_EXECUTION) or ""),
        execution_label=str(_dict(meta.get("labels")).get(LABEL_EXECUTION) or ""),
        created_at=parse_time(meta.get("creationTimestamp")),
        deadline_s=int(spec.get("activeDeadlineSeconds") or 0),
        failed_reason=failed_reason,
        failed_message=failed_message,
        failed_at=failed_at,
        complete=complete,
        deleting=meta.get("deletionTimestamp") is not None,
    )


def exit_status(end: ContainerEnd) -> tuple[int | None, int | None]:
    """(exit_code, signal). Container runtimes report a program killed by signal N as exit 128 + N."""
    if end.signal is not None:
        return None, end.signal
    if 128 < end.exit_code <= 128 + 64:
        return None, end.exit_code - 128
    return end.exit_code, None


def program_end(end: ContainerEnd) -> Decision:
    """The verdict of a run container that terminated by itself."""
    exit_code, sig = exit_status(end)
    if end.reason == OOM_REASON:
        # The OOM killer sends SIGKILL. Under gVisor it kills the whole sandbox, whose exit status is
        # then unknown: the runtime reports exit 128 (no signal), which is no exit of the program's.
        if sig is None and exit_code == 128:
            exit_code, sig = None, _signal.SIGKILL
        return Decision(State.LIMIT_EXCEEDED, Limit.MEMORY, exit_code, sig)
    if exit_code == 0:
        return Decision(State.SUCCEEDED, None, 0, None)
    if sig == _signal.SIGXFSZ:
        return Decision(State.LIMIT_EXCEEDED, Limit.DISK, exit_code, sig)
    return Decision(State.FAILED, None, exit_code, sig)


def _ended_by_itself(end: ContainerEnd, deadline_at: float | None) -> bool:
    """Did the program end before the deadline killed it? A clean exit 0 always did."""
    if end.exit_code == 0 and end.signal is None and end.reason != OOM_REASON:
        return True
    return deadline_at is not None and end.finished_at is not None and end.finished_at < deadline_at


def _not_started(pod: PodView | None) -> str:
    if pod is None:
        return "no pod was created"
    if pod.unschedulable:
        return f"Unschedulable: {pod.unschedulable}"
    if pod.waiting:
        return pod.waiting
    return f"pod {pod.phase}"


def decide(
    job: JobView | None, pod: PodView | None, now: float, start_timeout_s: float, grace_s: float
) -> Decision | None:
    """How the run ended, or None while it has not. `job` None: the Job is gone (deleted by someone else)."""
    if pod is not None and pod.compile_end is not None and pod.compile_end.exit_code != 0:
        exit_code, sig = exit_status(pod.compile_end)
        return Decision(State.COMPILE_ERROR, None, exit_code, sig)
    deadline = job is not None and job.failed_reason == DEADLINE_REASON
    deadline = deadline or (pod is not None and pod.reason == DEADLINE_REASON)
    run_end = pod.run_end if pod is not None else None
    if deadline:
        failed_at = job.failed_at if job is not None else None
        if run_end is not None and _ended_by_itself(run_end, failed_at):
            return program_end(run_end)
        if (pod is not None and pod.started) or run_end is not None:
            exit_code, sig = exit_status(run_end) if run_end is not None else (None, None)
            return Decision(State.LIMIT_EXCEEDED, Limit.WALL_TIME, exit_code, sig)
        return Decision(
            State.ERROR, None, None, None, f"the sandbox never started before its deadline: {_not_started(pod)}"
        )
    if run_end is not None:
        return program_end(run_end)
    if pod is not None and pod.phase == "Failed":
        why = ": ".join(x for x in (pod.reason or "Failed", pod.message) if x)
        return Decision(State.ERROR, None, None, None, f"the sandbox pod failed without a program end: {why}")
    if job is None:
        return Decision(State.ERROR, None, None, None, "the sandbox Job was deleted before the run ended")
    # The Job's end, from the job controller, can arrive before the pod's own end (two watches):
    # while the pod is there, its state is the better evidence, so wait for it.
    pod_final = pod is None or pod.gone
    if job.complete and pod_final:  # the Job succeeded, which means exit 0
        return Decision(State.SUCCEEDED, None, 0, None)
    if job.failed_reason is not None and pod_final:
        why = ": ".join(x for x in (job.failed_reason, job.failed_message) if x)
        return Decision(State.ERROR, None, None, None, f"the sandbox Job failed and its pod is gone: {why}")
    started = pod is not None and pod.started
    age_s = now - job.created_at if job.created_at is not None else 0.0
    if not started and pod is not None and pod.waiting_reason in HOPELESS_WAITING:
        return Decision(State.ERROR, None, None, None, f"the sandbox cannot start: {_not_started(pod)}", stop_job=True)
    if not started and age_s >= start_timeout_s:
        return Decision(
            State.ERROR,
            None,
            None,
            None,
            f"the sandbox did not start within {start_timeout_s:g}s: {_not_started(pod)}",
            stop_job=True,
        )
    if job.deadline_s and age_s >= job.deadline_s + grace_s:
        return Decision(
            State.ERROR,
            None,
            None,
            None,
            "the cluster reported no end of the sandbox Job after its deadline",
            stop_job=True,
        )
    return None


def next_check_at(job: JobView | None, pod: PodView | None, start_timeout_s: float, grace_s: float) -> float | None:
    """When `decide` could change its answer without any new event (a timeout), as epoch seconds."""
    if job is None or job.created_at is None:
        return None
    times = []
    if pod is None or not pod.started:
        times.append(job.created_at + start_timeout_s)
    if job.deadline_s:
        times.append(job.created_at + job.deadline_s + grace_s)
    return min(times) if times else None


def runner_decision(decision: Decision, end: RunnerEnd | None, oom_killed: bool) -> Decision:
    """A program end as aevatar-runner reported it (kube_frames), which the pod status only guesses.

    The status gives 128+N for a signal and nothing about which limit fired; the runner read the
    real status from waitid, enforced the wall time and output limits itself, and read the
    cgroup's OOM kills. A decision that is not a program end (never started, cancelled, ...) is
    kept, and so is every decision when there is no report (an image without the runner).
    """
    if end is None or decision.state not in {State.SUCCEEDED, State.FAILED, State.LIMIT_EXCEEDED}:
        return decision
    if end.error is not None:
        return Decision(State.ERROR, None, None, None, f"the sandbox could not start the program: {end.error}")
    limit = end.limit
    if limit is None and oom_killed and end.signal == _signal.SIGKILL:
        limit = Limit.MEMORY
    if limit is not None:
        return Decision(State.LIMIT_EXCEEDED, limit, end.exit_code, end.signal)
    if end.exit_code == 0:
        return Decision(State.SUCCEEDED, None, 0, None)
    return Decision(State.FAILED, None, end.exit_code, end.signal)
