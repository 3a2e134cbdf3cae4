"""The whole pipeline against the real broker and real bubblewrap sandboxes."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from typing import Any

import pytest

from streams import kafka
from streams.client import SandboxClient, new_request
from streams.records import ExecutionEvent
from streams.settings import Settings
from streams.states import State
from streams.topics import Topics
from tests.helpers import events_by_id, eventually, read_all, results_by_id

pytestmark = [pytest.mark.kafka, pytest.mark.sandbox]

PIPELINE_ENV = {"AEVATAR_SANDBOX_UID_BASE": "63000", "AEVATAR_SANDBOX_STATE_DIR": "/tmp/aevatar-pipeline-tests"}


def env(**extra: str) -> dict[str, str]:
    return {**PIPELINE_ENV, **{f"AEVATAR_{k.upper()}": v for k, v in extra.items()}}


def _uid_processes(uid_base: int, slots: int) -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and _uid_of(p) in range(uid_base, uid_base + slots)]


def _user_code_processes(uid_base: int, slots: int) -> list[int]:
    """Processes in the uid range that are neither zombies nor bubblewrap itself."""
    out = []
    for pid in _uid_processes(uid_base, slots):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
        if state != "Z" and name != "bwrap":
            out.append(int(pid))
    return out


def _uid_of(pid: str) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return -1


def _marker_processes(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            continue
    return found


async def produce_raw(
    settings: Settings, records: list[tuple[str, bytes, bytes]], *, timestamp_ms: int | None = None
) -> None:
    """(topic, key, value) records straight onto the broker, as an outside producer would."""
    producer = kafka.producer(settings)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key=key, timestamp_ms=timestamp_ms)
    finally:
        await producer.stop()


async def still_runs(settings: Settings, text: str) -> None:
    """A program printing `text` runs to SUCCEEDED: the pipeline flows."""
    async with SandboxClient(settings) as client:
        result = await client.run("python", f"print({text!r})")
    assert result.state is State.SUCCEEDED and result.stdout == text.encode() + b"\n"


async def dead_letters(settings: Settings, *, at_least: int) -> list[Any]:
    """The dead-letter topic's records, once it holds at least `at_least` of them (30 s at most)."""
    topic = Topics(settings.topic_prefix).deadletter

    async def parked() -> bool:
        return len(await read_all(settings, topic)) >= at_least

    await eventually(parked, 30, 0.2)
    return await read_all(settings, topic)


async def test_python_program_ends_as_result_with_ordered_events(settings: Settings, start_worker: Any) -> None:
    start_worker(settings, "all", env=env())
    async with SandboxClient(settings) as client:
        result = await client.run("python", "import sys\nprint('hello', sys.stdin.read())", stdin="world")
    assert result.state is State.SUCCEEDED
    assert result.stdout == b"hello world\n"
    assert result.exit_code == 0 and result.attempts == 1 and result.language == "python"
    assert result.finished_at_ms >= result.created_at_ms and result.total_ms >= result.run_ms
    events = (await events_by_id(settings))[result.id]
    first: dict[int, ExecutionEvent] = {}  # each seq's first copy on the log, in log order
    for event in events:
        first.setdefault(event.seq, event)
    states = [e.state for e in first.values()]
    assert states == [State.REQUESTED, State.VALIDATED, State.QUEUED, State.SCHEDULED, State.STARTED, State.SUCCEEDED]
    # On each partition the order of the log is the order of the transitions.
    assert list(first) == list(range(6))
    # A second copy of a transition (the executor writes its launch's SCHEDULED again) is the same one.
    assert all(e.state is first[e.seq].state for e in events)
    assert len(events) <= 7


async def test_same_request_id_three_times_runs_once(settings: Settings, start_worker: Any) -> None:
    start_worker(settings, "all", env=env())
    request = new_request("python", "print('once')")
    async with SandboxClient(settings) as client:
        for _ in range(3):
            await client.submit(request)
        result = await client.result(request.id, 60)
        assert result.stdout == b"once\n"
        # A marker request submitted after the duplicates: once it is done, the duplicates were processed.
        marker = await client.run("python", "print('after')")
        assert marker.state is State.SUCCEEDED
    await asyncio.sleep(1)
    results = await results_by_id(settings)
    assert len(results[request.id]) == 1
    events = (await events_by_id(settings))[request.id]
    assert sum(e.state is State.STARTED for e in events) == 1
    assert sum(e.state is State.REQUESTED for e in events) == 1


async def test_garbage_goes_to_deadletter_and_pipeline_flows(settings: Settings, start_worker: Any) -> None:
    start_worker(settings, "all", env=env())
    topics = Topics(settings.topic_prefix)
    garbage = [
        (topics.requests, b"junk", b"\x00\x01 garbage"),
        (topics.requests, b"junk2", b"\xc3\x01" + b"\x07" * 8 + b"body"),
    ]
    await produce_raw(settings, garbage)
    await still_runs(settings, "still flowing")
    dead = await read_all(settings, topics.deadletter)
    assert sorted(r.value for r in dead) == sorted([b"\x00\x01 garbage", b"\xc3\x01" + b"\x07" * 8 + b"body"])
    reasons = sorted(dict(r.headers)["x-aevatar-reason"].decode() for r in dead)
    assert reasons[0].startswith("BadMagic") and reasons[1].startswith("UnknownFingerprint")
    assert all(dict(r.headers)["x-aevatar-source-topic"] == topics.requests.encode() for r in dead)


async def test_garbage_on_the_schedulers_and_executors_topics_is_dead_lettered_and_runs_flow(
    settings: Settings, start_worker: Any
) -> None:
    start_worker(settings, "all", env=env())
    topics = Topics(settings.topic_prefix)
    targets = (topics.events, topics.cancellations, topics.leases, topics.launches)
    await produce_raw(settings, [(t, b"junk:1", b"\x00 not avro on " + t.encode()) for t in targets])
    await still_runs(settings, "scheduled anyway")

    dead = await dead_letters(settings, at_least=5)
    by_stage = sorted((dict(r.headers)["x-aevatar-stage"], dict(r.headers)["x-aevatar-source-topic"]) for r in dead)
    # The scheduler parks one of each of its topics, the executor the launch; the completion
    # processor, which also reads the events, parks its own.
    assert by_stage == sorted(
        [
            (b"launch", topics.launches.encode()),
            (b"completion", topics.events.encode()),
            (b"scheduling", topics.events.encode()),
            (b"scheduling", topics.cancellations.encode()),
            (b"scheduling", topics.leases.encode()),
        ]
    )
    assert all(r.value.startswith(b"\x00 not avro on ") for r in dead)


async def test_inputs_older_than_the_dedupe_window_are_dead_lettered_as_stale_and_runs_flow(
    settings: Settings, start_worker: Any
) -> None:
    """Beyond the window an id may be forgotten: a replayed request, VALIDATED or terminal event that
    old must not run, queue or complete again (each processor parks it with its reason)."""
    start_worker(settings, "all", env=env())
    topics = Topics(settings.topic_prefix)
    eight_days_ago_ms = int(time.time() * 1000) - 8 * 24 * 3600 * 1000
    request = new_request("python", "print('stale')")
    validated = ExecutionEvent(
        execution_id=uuid.uuid4().hex, seq=1, state=State.VALIDATED, at_ms=eight_days_ago_ms,
        request=new_request("python", "print('stale')").encode(), max_attempts=1,
    )  # fmt: skip
    finished = ExecutionEvent(execution_id=uuid.uuid4().hex, seq=5, state=State.SUCCEEDED, at_ms=eight_days_ago_ms)
    stale = [
        (topics.requests, request.id.encode(), request.encode()),
        (topics.events, validated.key, validated.encode()),
        (topics.events, finished.key, finished.encode()),
    ]
    await produce_raw(settings, stale, timestamp_ms=eight_days_ago_ms)
    await still_runs(settings, "fresh")

    dead = await dead_letters(settings, at_least=3)
    reasons = sorted((dict(r.headers)["x-aevatar-stage"], dict(r.headers)["x-aevatar-reason"]) for r in dead)
    reasons = [(stage.decode(), reason.decode()) for stage, reason in reasons]
    assert [stage for stage, _ in reasons] == ["completion", "scheduling", "validation"]
    assert all(reason.startswith("stale: ") and "AEVATAR_DEDUPE_WINDOW_S" in reason for _, reason in reasons)
    events = await events_by_id(settings)
    assert request.id not in events  # never REQUESTED, never run
    assert [e.state for e in events[validated.execution_id]] == [State.VALIDATED]  # never QUEUED
    assert finished.execution_id not in await results_by_id(settings)  # no second result


async def test_finished_entries_leave_the_schedulers_queue_after_the_dedupe_window(
    settings: Settings, start_worker: Any
) -> None:
    """The queue topic (and the scheduler's memory) does not keep a finished run for ever."""
    start_worker(settings, "all", env=env(dedupe_window_s="2"))
    queue = Topics(settings.topic_prefix).scheduler_queue
    async with SandboxClient(settings) as client:
        first = await client.run("python", "print('first')")
        assert first.state is State.SUCCEEDED
        assert first.id in await kafka.latest_by_key(settings, queue, range(settings.partitions))

        async def forgotten() -> bool:
            return first.id not in await kafka.latest_by_key(settings, queue, range(settings.partitions))

        await eventually(forgotten, 30, 0.5)  # deleted (a tombstone) once 2 s have passed
        records = [r for r in await read_all(settings, queue) if r.key == first.id.encode()]
        assert records[-1].value is None
        second = await client.run("python", "print('second')")
    assert second.state is State.SUCCEEDED and second.stdout == b"second\n"


async def test_the_queue_survives_a_restart_of_the_scheduler(settings: Settings, start_worker: Any) -> None:
    """Queued runs are read back from the queue topic by the next scheduler and each runs once."""
    first = start_worker(settings, "validation", "scheduling", env=env(capacity="1"))
    requests = [new_request("python", f"print({i})") for i in range(4)]
    async with SandboxClient(settings) as client:
        for r in requests:
            await client.submit(r)

        async def queued() -> bool:
            states = {i: [e.state for e in evs] for i, evs in (await events_by_id(settings)).items()}
            return sum(State.QUEUED in s for s in states.values()) == 4

        await eventually(queued, 60, 0.2)
        first.kill()
        start_worker(settings, "all", env=env(capacity="1"))
        results = await asyncio.gather(*(client.result(r.id, 120) for r in requests))
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(4)]
    events = await events_by_id(settings)
    for r in requests:
        states = [e.state for e in events[r.id]]
        assert states.count(State.QUEUED) == 1 and states.count(State.STARTED) == 1, states


async def test_rejected_request_has_reason_and_field(settings: Settings, start_worker: Any) -> None:
    start_worker(settings, "all", env=env())
    async with SandboxClient(settings) as client:
        result = await client.run("python", "print(1)", limits={"memory_mib": 1_000_000})
        unknown = await client.run("cobol", "DISPLAY 'HI'.")
    assert result.state is State.REJECTED and result.field == "limits.memory_mib"
    assert result.reason is not None and "maximum" in result.reason
    assert unknown.state is State.REJECTED and unknown.field == "language"


async def test_cancel_queued_and_running(settings: Settings, start_worker: Any) -> None:
    start_worker(settings, "all", env=env(capacity="1", executor_slots="1"))
    marker = f"sleeper-{uuid.uuid4().hex[:8]}"
    sleeper = new_request("python", "import time\ntime.sleep(60)", args=[marker], limits={"wall_time_ms": 60_000})
    queued = new_request("python", "print('never')")
    async with SandboxClient(settings) as client:
        await client.submit(sleeper)

        async def sleeper_started() -> bool:
            return any(e.state is State.STARTED for e in (await events_by_id(settings)).get(sleeper.id, []))

        await eventually(sleeper_started, 60)
        await eventually(lambda: _marker_processes(marker), 10, 0.1)
        await client.submit(queued)

        async def queued_is_queued() -> bool:
            return any(e.state is State.QUEUED for e in (await events_by_id(settings)).get(queued.id, []))

        await eventually(queued_is_queued, 30)
        await client.cancel(queued.id)
        queued_result = await client.result(queued.id, 30)
        await client.cancel(sleeper.id)
        sleeper_result = await client.result(sleeper.id, 30)
    assert queued_result.state is State.CANCELLED and queued_result.stdout == b""
    assert sleeper_result.state is State.CANCELLED
    assert sleeper_result.total_ms < 50_000
    await eventually(lambda: not _marker_processes(marker), 10, 0.1)


async def test_capacity_two_with_ten_slow_requests(settings: Settings, start_worker: Any) -> None:
    start_worker(settings, "all", env=env(capacity="2", executor_slots="4"))
    requests = [new_request("python", "import time\ntime.sleep(0.7)\nprint('done')") for _ in range(10)]
    async with SandboxClient(settings) as client:
        for r in requests:
            await client.submit(r)
        results = await asyncio.gather(*(client.result(r.id, 120) for r in requests))
    assert all(r.state is State.SUCCEEDED and r.stdout == b"done\n" for r in results)
    events = await events_by_id(settings)
    # Sweep the STARTED and terminal instants; at equal instants an end frees its slot first.
    edges: list[tuple[int, int]] = []
    for r in requests:
        for e in events[r.id]:
            if e.state is State.STARTED:
                edges.append((e.at_ms, 1))
            elif e.state.terminal:
                edges.append((e.at_ms, -1))
    running = peak = 0
    for _, delta in sorted(edges):
        running += delta
        peak = max(peak, running)
    assert peak == 2


async def test_crash_kill_9_with_200_in_flight(settings: Settings, start_worker: Any) -> None:
    """200 requests in flight, the processors' process killed with -9, restarted: exactly one result each."""
    worker_env = env(capacity="4", executor_slots="4", lease_ms="3000", max_attempts="3")
    first = start_worker(settings, "all", env=worker_env)
    # Each run sleeps a little, so that runs are in their sandboxes at the moment of the kill.
    requests = [new_request("python", f"import time\ntime.sleep(0.2)\nprint({i})") for i in range(200)]
    async with SandboxClient(settings) as client:
        for r in requests:
            await client.submit(r)

        runs_dir = f"{PIPELINE_ENV['AEVATAR_SANDBOX_STATE_DIR']}/63000/runs"

        async def some_done() -> bool:
            return len(await results_by_id(settings)) >= 20

        await eventually(some_done, 120, 0.2)
        # The kill lands while programs are in their sandboxes (not in the moment between two runs).
        await eventually(lambda: bool(os.path.isdir(runs_dir) and os.listdir(runs_dir)), 30, 0.005)
        first.kill()
        done_at_crash = len(await results_by_id(settings))
        assert done_at_crash < 200, "the crash came too late to test anything"
        # The killed executor's programs died with it (parent-death signal): no user code runs on.
        await eventually(lambda: not _user_code_processes(63000, 4), 10, 0.1)
        leftovers = _uid_processes(63000, 4)  # idle or zombie sandbox inits, swept by the restart
        assert os.listdir(runs_dir), "nothing to sweep"
        start_worker(settings, "all", env=worker_env)
        results = await asyncio.gather(*(client.result(r.id, 240) for r in requests))
    for i, result in enumerate(results):
        assert result.state is State.SUCCEEDED, (result.id, result.state, result.reason)
        assert result.stdout == f"{i}\n".encode()
    # The restarted executor swept what the killed one left before running anything.
    assert "swept_stale_runs" in start_worker.workers[-1].log()
    assert not set(leftovers) & set(_uid_processes(63000, 4))
    await asyncio.sleep(2)
    counts = await results_by_id(settings)
    assert {rid: len(v) for rid, v in counts.items() if len(v) != 1} == {}
    assert set(counts) == {r.id for r in requests}


async def test_two_launch_workers_share_the_load(settings: Settings, start_worker: Any) -> None:
    start_worker(settings, "validation", "scheduling", "completion", env=env(capacity="8"))
    launchers = [
        start_worker(settings, "launch", env=env(executor_slots="4")),
        start_worker(settings, "launch", env=env(executor_slots="4", sandbox_uid_base="63100")),
    ]
    # Both executors in the group before the load: a rebalance moves only launches not yet started.
    await eventually(lambda: all('"launch_assigned"' in w.log() for w in launchers), 60, 0.2)
    requests = [new_request("python", f"print({i})") for i in range(100)]
    async with SandboxClient(settings) as client:
        for r in requests:
            await client.submit(r)
        results = await asyncio.gather(*(client.result(r.id, 240) for r in requests))
    assert [r.stdout for r in results] == [f"{i}\n".encode() for i in range(100)]
    events = await events_by_id(settings)
    executors: dict[str, int] = {}
    for r in requests:
        started = [e for e in events[r.id] if e.state is State.STARTED]
        assert len(started) == 1
        executor = started[0].executor or ""
        executors[executor] = executors.get(executor, 0) + 1
    assert len(executors) == 2, executors
    assert min(executors.values()) >= 10, executors


def _started(events: list[ExecutionEvent]) -> int:
    return sum(e.state is State.STARTED for e in events)
