"""The Kubernetes backend (KubernetesHostManager): one Job per execution, in the sandbox namespace.

The thin edge over three pure modules: kube_manifest builds the Job and its input ConfigMap,
kube_outcome decides how a run ended from the Job and pod the API server reports, and kube_watch
keeps those objects current (list, then watch from the resourceVersion, relist after a 410).

- run(): create the Job, then its input ConfigMap owned by the Job (the garbage collector deletes
  it with the Job); wait for a decision, which comes from watch events or from a timer set at the
  next moment a timeout could decide it (never a polling loop); read the logs; build the Outcome.
  A Job that already exists for the execution id is adopted, not created twice.
- cancel(): delete the Job with foreground propagation; the run ends CANCELLED.
- adopt(): after an executor restart, the Jobs this executor had started, found by label, to
  `attach()` to.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from runtime.capture import Capture, Stream
from runtime.errors import BackendClosed, InvalidRequest, RuntimeSandboxError, UnknownLanguage
from runtime.kube_client import KubeApiError, KubeClient, connect
from runtime.kube_frames import FrameDecoder, RunnerEnd, decode_log, log_limit_bytes
from runtime.kube_manifest import (
    ANNOTATION_EXECUTION,
    ANNOTATION_OUTPUT_BYTES,
    CONTAINER_COMPILE,
    CONTAINER_RUN,
    LABEL_EXECUTION,
    LABEL_LANGUAGE,
    JsonObject,
    KubernetesConfig,
    build_configmap,
    build_job,
    job_name,
    label_value,
    selector,
)
from runtime.kube_outcome import Decision, decide, next_check_at, observe_job, observe_pod, runner_decision
from runtime.kube_watch import Informer
from runtime.languages import LANGUAGES, Language
from runtime.types import LanguageInfo, Limits, OnOutput, Outcome, OutputChunk, RunRequest
from streams.states import Limit, State

log = structlog.get_logger()
FOLLOW_READ_TIMEOUT_S = 3600.0  # a followed log may stay silent as long as the program runs
FOLLOW_DRAIN_S = 2.0  # after the end, how long the follower may take to deliver what it has

__all__ = ["ApiPodLogs", "ContainerLogs", "KubernetesConfig", "KubernetesHostManager", "PodLogs"]


@dataclass(frozen=True, slots=True)
class ContainerLogs:
    stdout: bytes
    stderr: bytes
    end: RunnerEnd | None = None  # how the program ended, when aevatar-runner wrote the log


class PodLogs(Protocol):
    """Where a container's output comes from (the pod log API, served by the kubelet)."""

    async def read(self, namespace: str, pod: str, container: str, limit_bytes: int) -> ContainerLogs:
        """Everything the container wrote, up to limit_bytes per stream."""
        ...

    def follow(self, namespace: str, pod: str, container: str, limit_bytes: int) -> AsyncIterator[tuple[Stream, bytes]]:
        """The container's output as it is written, until the container ends."""
        ...


class ApiPodLogs:
    """PodLogs through the API server's pods/log subresource.

    A log that aevatar-runner wrote (runtime/kube_frames.py) carries both streams apart and the
    program's end, with no feature gate; any other log is the container's output as the API
    gives it: both streams mixed, as stdout, unless `split_streams` (the alpha
    PodLogsQuerySplitStreams gate) lets the API tell them apart.
    """

    def __init__(self, client: KubeClient, split_streams: bool = False) -> None:
        self._client = client
        self.split_streams = split_streams

    async def _read(self, namespace: str, pod: str, container: str, limit_bytes: int, stream: str | None) -> bytes:
        query: dict[str, str | int | bool] = {"container": container, "limitBytes": limit_bytes}
        if stream is not None:
            query["stream"] = stream
        return await self._client.read_bytes(f"/api/v1/namespaces/{namespace}/pods/{pod}/log", query=query)

    async def read(self, namespace: str, pod: str, container: str, limit_bytes: int) -> ContainerLogs:
        first = "Stdout" if self.split_streams else None  # the runner writes its frames to its stdout
        log = decode_log(await self._read(namespace, pod, container, log_limit_bytes(limit_bytes), first))
        if log.end is not None or log.stderr:  # the runner's frames: both streams apart, and the end
            return ContainerLogs(log.stdout, log.stderr, log.end)
        if not self.split_streams:  # both streams interleaved: reported as stdout
            return ContainerLogs(log.stdout[:limit_bytes], b"")
        err = await self._read(namespace, pod, container, limit_bytes, "Stderr")
        return ContainerLogs(log.stdout[:limit_bytes], err)

    async def follow(
        self, namespace: str, pod: str, container: str, limit_bytes: int
    ) -> AsyncIterator[tuple[Stream, bytes]]:
        path = f"/api/v1/namespaces/{namespace}/pods/{pod}/log"
        base: dict[str, str | int | bool] = {
            "container": container,
            "limitBytes": log_limit_bytes(limit_bytes),
            "follow": True,
        }
        if not self.split_streams:
            decoder = FrameDecoder()
            async for chunk in self._client.stream_bytes(path, base, FOLLOW_READ_TIMEOUT_S):
                for decoded in decoder.feed(chunk):
                    yield decoded
            for decoded in decoder.flush():
                yield decoded
            return
        queue: asyncio.Queue[tuple[Stream, bytes] | BaseException | None] = asyncio.Queue()

        async def pump(stream: Stream, name: str) -> None:
            # The runner writes only to its stdout: its frames carry both of the program's streams.
            decoder = FrameDecoder() if stream == "stdout" else None
            try:
                async for chunk in self._client.stream_bytes(path, {**base, "stream": name}, FOLLOW_READ_TIMEOUT_S):
                    for piece in decoder.feed(chunk) if decoder is not None else [(stream, chunk)]:
                        await queue.put(piece)
                for piece in decoder.flush() if decoder is not None else []:
                    await queue.put(piece)
                await queue.put(None)
            except Exception as exc:
                await queue.put(exc)

        pumps = [asyncio.create_task(pump("stdout", "Stdout")), asyncio.create_task(pump("stderr", "Stderr"))]
        try:
            open_streams = len(pumps)
            while open_streams:
                item = await queue.get()
                if item is None:
                    open_streams -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)


def _error_outcome(message: str) -> Outcome:
    return Outcome(State.ERROR, None, None, None, b"", b"", b"", False, False, 0, 0, 0, 0, message)


def _labels_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels if isinstance(labels, Mapping) else {}


@dataclass(slots=True)
class _Run:
    execution_id: str
    name: str
    language: Language | None
    output_bytes: int
    job: JsonObject | None = None
    job_gone: bool = False
    pod: JsonObject | None = None  # the latest state seen, kept after the pod is deleted
    pod_gone: bool = False
    cancelled: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    follower: asyncio.Task[None] | None = None
    sent: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0})  # bytes given to on_output


class KubernetesHostManager:
    """The Backend that runs each request as a Kubernetes Job."""

    def __init__(
        self,
        client: KubeClient,
        config: KubernetesConfig | None = None,
        *,
        logs: PodLogs | None = None,
        languages: Mapping[str, Language] | None = None,
        clock: Callable[[], float] = time.time,
        owns_client: bool = False,
    ) -> None:
        self.config = config or KubernetesConfig()
        self._client = client
        self._owns_client = owns_client
        ns = self.config.namespace
        self._jobs_path = f"/apis/batch/v1/namespaces/{ns}/jobs"
        self._configmaps_path = f"/api/v1/namespaces/{ns}/configmaps"
        self._logs: PodLogs = logs or ApiPodLogs(client, self.config.split_log_streams)
        self._languages = languages if languages is not None else LANGUAGES
        self._clock = clock
        self._runs: dict[str, _Run] = {}  # by execution label
        self._closed = False
        self._start_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        sel = selector()
        cfg = self.config
        self.jobs = Informer(
            "jobs", client, self._jobs_path, sel, self._on_job,
            timeout_s=cfg.watch_timeout_s, backoff_initial_ms=cfg.watch_backoff_initial_ms,
            backoff_max_ms=cfg.watch_backoff_max_ms,
        )  # fmt: skip
        self.pods = Informer(
            "pods", client, f"/api/v1/namespaces/{ns}/pods", sel, self._on_pod,
            timeout_s=cfg.watch_timeout_s, backoff_initial_ms=cfg.watch_backoff_initial_ms,
            backoff_max_ms=cfg.watch_backoff_max_ms,
        )  # fmt: skip

    @classmethod
    async def from_kubeconfig(
        cls, kubeconfig: str | None, config: KubernetesConfig | None = None, context: str | None = None
    ) -> KubernetesHostManager:
        """Connect with a kubeconfig file (None: in-cluster config); close() closes the client too."""
        return cls(await connect(kubeconfig, context), config, owns_client=True)

    # -- watching -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the Job and pod watches (once) and wait for their first list.

        Raises KubeApiError when the API server does not answer a list within status_grace_ms.
        """
        if self.jobs.synced.is_set() and self.pods.synced.is_set():
            return
        async with self._start_lock:
            if not self._tasks:
                self._tasks = [
                    asyncio.create_task(i.run(), name=f"kube-watch-{i.kind}") for i in (self.jobs, self.pods)
                ]
        waits = [asyncio.ensure_future(i.synced.wait()) for i in (self.jobs, self.pods)]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), self.config.status_grace_ms / 1000)
        except TimeoutError:
            why = self.jobs.last_error or self.pods.last_error or "no answer"
            raise KubeApiError(0, f"the API server did not list the sandbox Jobs and pods: {why}") from None
        finally:
            for w in waits:
                w.cancel()

    def _on_job(self, event: str, obj: JsonObject) -> None:
        run = self._runs.get(str(_labels_of(obj).get(LABEL_EXECUTION, "")))
        if run is None or (obj.get("metadata") or {}).get("name") != run.name:
            return
        if event == "DELETED":
            run.job_gone = True
        else:
            run.job = obj
        run.changed.set()

    def _on_pod(self, event: str, obj: JsonObject) -> None:
        run = self._runs.get(str(_labels_of(obj).get(LABEL_EXECUTION, "")))
        if run is None:
            return
        run.pod = obj  # on DELETED too: the last state tells how the program ended
        run.pod_gone = event == "DELETED"
        run.changed.set()

    def _register(self, execution_id: str, language: Language | None, output_bytes: int) -> _Run:
        key = label_value(execution_id)
        if key in self._runs:
            raise InvalidRequest(f"execution {execution_id!r} is already running here")
        run = _Run(execution_id, job_name(execution_id), language, output_bytes)
        self._runs[key] = run
        # Seed from the caches: the objects may be older than this registration (adoption).
        job = self.jobs.objects.get(run.name)
        if job is not None:
            run.job = job
        for pod in self.pods.objects.values():
            if _labels_of(pod).get(LABEL_EXECUTION) == key:
                run.pod = pod
        return run

    # -- Backend Protocol -----------------------------------------------------------------------
    async def run(self, request: RunRequest, on_output: OnOutput | None = None) -> Outcome:
        if self._closed:
            return _error_outcome(str(BackendClosed("the Kubernetes backend is closed")))
        language = self._languages.get(request.language)
        if language is None:
            return _error_outcome(str(UnknownLanguage(request.language)))
        if request.network:
            return _error_outcome("network access is not available on this backend (the sandbox namespace denies it)")
        try:
            job = build_job(request, language, self.config)
            await self.start()
            run = self._register(request.execution_id, language, request.limits.output_bytes)
        except (InvalidRequest, KubeApiError) as exc:
            return _error_outcome(str(exc))
        created_here = False
        try:
            try:
                created = await self._client.request("POST", self._jobs_path, body=job)
                created_here = True
            except KubeApiError as exc:
                if exc.status != 409:
                    raise
                created = await self._existing_job(run)  # adopt the Job a previous executor life created
            if run.job is None:
                run.job = created
            uid = str(created["metadata"]["uid"])
            configmap = build_configmap(request, language, self.config, uid)
            try:
                await self._client.request("POST", self._configmaps_path, body=configmap)
            except KubeApiError as exc:
                if exc.status != 409:
                    raise
            return await self._wait(run, on_output)
        except (KubeApiError, RuntimeSandboxError) as exc:
            if created_here:
                with contextlib.suppress(KubeApiError):
                    await self._delete_job(run.name)
            return _error_outcome(f"the Kubernetes backend failed: {exc}")
        finally:
            self._runs.pop(label_value(request.execution_id), None)

    async def cancel(self, execution_id: str) -> bool:
        run = self._runs.get(label_value(execution_id))
        if run is None or run.execution_id != execution_id:
            return False
        run.cancelled = True
        run.changed.set()
        with contextlib.suppress(KubeApiError):
            await self._delete_job(run.name)
        return True

    async def languages(self) -> list[LanguageInfo]:
        """A language is available when a runner image is configured for it; its version is the image tag's."""
        out = []
        for lang in self._languages.values():
            image = self.config.images.get(lang.name)
            tag = image.rsplit(":", 1)[1] if image and ":" in image.rsplit("/", 1)[-1] else ""
            version = lang.parse_version(tag.encode()) or ""
            out.append(LanguageInfo(lang.name, version, lang.compiled, image is not None))
        return out

    async def close(self) -> None:
        self._closed = True
        for run in list(self._runs.values()):
            run.cancelled = True
            run.changed.set()
            with contextlib.suppress(KubeApiError):
                await self._delete_job(run.name)
        for _ in range(100):
            if not self._runs:
                break
            await asyncio.sleep(0.01)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._owns_client:
            await self._client.close()

    # -- executor restart -----------------------------------------------------------------------
    async def adopt(self) -> list[str]:
        """Execution ids of this executor's Jobs that have not finished, to `attach` to after a restart."""
        await self.start()
        listed = await self._client.request(
            "GET", self._jobs_path, query={"labelSelector": selector(self.config.executor_id)}
        )
        out = []
        for raw in listed.get("items") or []:
            view = observe_job(raw)
            if view.execution_id and not view.complete and view.failed_reason is None and not view.deleting:
                out.append(view.execution_id)
        return sorted(out)

    async def attach(self, execution_id: str, on_output: OnOutput | None = None) -> Outcome:
        """Wait for a Job started earlier (by this executor before a restart) and return its Outcome."""
        if self._closed:
            return _error_outcome(str(BackendClosed("the Kubernetes backend is closed")))
        try:
            await self.start()
            run = self._register(execution_id, None, 0)
        except (InvalidRequest, KubeApiError) as exc:
            return _error_outcome(str(exc))
        try:
            job = await self._existing_job(run)
            if run.job is None:
                run.job = job
            annotations = (job.get("metadata") or {}).get("annotations") or {}
            run.language = self._languages.get(str(_labels_of(job).get(LABEL_LANGUAGE, "")))
            run.output_bytes = int(annotations.get(ANNOTATION_OUTPUT_BYTES) or Limits().output_bytes)
            return await self._wait(run, on_output)
        except (KubeApiError, RuntimeSandboxError, KeyError) as exc:
            return _error_outcome(f"the Kubernetes backend failed: {exc}")
        finally:
            self._runs.pop(label_value(execution_id), None)

    # -- internals ------------------------------------------------------------------------------
    async def _existing_job(self, run: _Run) -> JsonObject:
        # list, not get: the executor's Role grants jobs create, delete, list and watch only.
        listed = await self._client.request(
            "GET", self._jobs_path, query={"fieldSelector": f"metadata.name={run.name}"}
        )
        items = [i for i in listed.get("items") or [] if isinstance(i, dict)]
        if not items:
            raise KubeApiError(404, f"Job {run.name} not found")
        job = items[0]
        owner = (job.get("metadata") or {}).get("annotations", {}).get(ANNOTATION_EXECUTION)
        if owner != run.execution_id:
            raise InvalidRequest(f"Job {run.name} belongs to execution {owner!r}, not {run.execution_id!r}")
        return job

    async def _delete_job(self, name: str, propagation: str = "Foreground") -> None:
        try:
            await self._client.request("DELETE", f"{self._jobs_path}/{name}", body={"propagationPolicy": propagation})
        except KubeApiError as exc:
            if exc.status != 404:
                raise

    async def _wait(self, run: _Run, on_output: OnOutput | None) -> Outcome:
        try:
            outcome = await self._wait_for_end(run, on_output)
            if not self.config.keep_finished_jobs:  # read: the pod has nothing more to tell
                with contextlib.suppress(KubeApiError):
                    await self._delete_job(run.name, "Background")
            return outcome
        finally:
            if run.follower is not None and not run.follower.done():
                run.follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await run.follower

    async def _wait_for_end(self, run: _Run, on_output: OnOutput | None) -> Outcome:
        cfg = self.config
        start_timeout_s, grace_s = cfg.start_timeout_ms / 1000, cfg.status_grace_ms / 1000
        decision: Decision | None = None
        while decision is None:
            if run.cancelled:  # delete again: cancel() may have come before the Job existed
                with contextlib.suppress(KubeApiError):
                    await self._delete_job(run.name)
                return Outcome(State.CANCELLED, None, None, None, b"", b"", b"", False, False, 0, 0, 0, 0)
            run.changed.clear()
            job = observe_job(run.job) if run.job is not None and not run.job_gone else None
            pod = observe_pod(run.pod, run.pod_gone) if run.pod is not None else None
            decision = decide(job, pod, self._clock(), start_timeout_s, grace_s)
            if decision is not None:
                break
            if on_output is not None and run.follower is None and pod is not None and pod.run_started:
                run.follower = asyncio.create_task(self._follow(run, pod.name, on_output))
            wake_at = next_check_at(job, pod, start_timeout_s, grace_s)
            timeout = None if wake_at is None else max(0.05, wake_at - self._clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.changed.wait(), timeout)
        if decision.stop_job:
            with contextlib.suppress(KubeApiError):
                await self._delete_job(run.name)
        if run.follower is not None:  # let it deliver what the kubelet still has, briefly
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(run.follower), FOLLOW_DRAIN_S)
        return await self._outcome(run, decision, on_output)

    async def _follow(self, run: _Run, pod: str, on_output: OnOutput) -> None:
        """Live output while the program runs; the final read in _outcome sends whatever this missed."""
        live = Capture(max(run.output_bytes, 0))
        try:
            async for stream, chunk in self._logs.follow(
                self.config.namespace, pod, CONTAINER_RUN, run.output_bytes + 1
            ):
                kept, offset = live.add(stream, chunk)
                if kept:
                    await on_output(OutputChunk(stream, kept, offset))
                    run.sent[stream] = offset + len(kept)
        except KubeApiError as exc:
            log.info("kube_logs_follow_ended", pod=pod, error=str(exc))

    async def _outcome(self, run: _Run, decision: Decision, on_output: OnOutput | None) -> Outcome:
        pod = observe_pod(run.pod, run.pod_gone) if run.pod is not None else None
        cap = max(run.output_bytes, 0)
        compile_output, compile_ms, run_ms = b"", 0, 0
        capture = Capture(cap)
        log_error: str | None = None
        end: RunnerEnd | None = None
        if pod is not None and pod.name:
            if pod.compile_end is not None:
                compile_ms = pod.compile_end.ms
                try:
                    logs = await self._logs.read(self.config.namespace, pod.name, CONTAINER_COMPILE, 65_536)
                    compile_output = logs.stdout + logs.stderr
                    if logs.end is not None:  # milliseconds, where the pod status has whole seconds
                        compile_ms = logs.end.run_ms
                except KubeApiError as exc:
                    log_error = str(exc)
                    log.warning("kube_logs_unreadable", pod=pod.name, container=CONTAINER_COMPILE, error=log_error)
            if pod.run_end is not None or decision.state in {State.LIMIT_EXCEEDED, State.FAILED}:
                run_ms = pod.run_end.ms if pod.run_end is not None else 0
                try:
                    logs = await self._logs.read(self.config.namespace, pod.name, CONTAINER_RUN, cap + 1)
                    end = logs.end
                    streams: tuple[tuple[Stream, bytes], ...] = (("stdout", logs.stdout), ("stderr", logs.stderr))
                    for stream, data in streams:
                        capture.add(stream, data)
                    if on_output is not None:  # what the live follower did not send
                        for stream, _ in streams:
                            rest = bytes(capture.data[stream][run.sent[stream] :])
                            if rest:
                                await on_output(OutputChunk(stream, rest, run.sent[stream]))
                                run.sent[stream] += len(rest)
                except KubeApiError as exc:
                    log_error = str(exc)
                    log.warning("kube_logs_unreadable", pod=pod.name, container=CONTAINER_RUN, error=log_error)
        oom_killed = pod is not None and pod.run_end is not None and pod.run_end.reason == "OOMKilled"
        decision = runner_decision(decision, end, oom_killed)
        if end is not None and end.truncated is not None:
            capture.truncated[end.truncated] = True
        state, limit, error = decision.state, decision.limit, decision.error
        if capture.overflowed and state in {State.SUCCEEDED, State.FAILED}:
            state, limit = State.LIMIT_EXCEEDED, Limit.OUTPUT
        if state is State.ERROR and error is None:
            error = log_error
        return Outcome(
            state, limit, decision.exit_code, decision.signal,
            bytes(capture.data["stdout"]), bytes(capture.data["stderr"]), compile_output,
            capture.truncated["stdout"], capture.truncated["stderr"],
            end.cpu_time_ms if end is not None else 0, end.memory_peak_kib if end is not None else 0,
            compile_ms, end.run_ms if end is not None else run_ms, error,
        )  # fmt: skip
