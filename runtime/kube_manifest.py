"""Pure: the Kubernetes objects of one execution (a Job, and the ConfigMap that carries its input).

No I/O and no client library: the objects are plain JSON-shaped dicts, exactly what the API server
receives, so that tests can compare them field by field with what the server gives back.

Layout inside the pod:
  /input   the ConfigMap, read-only: the source and files under files/, stdin as `stdin`
  /work    the working directory: an in-memory emptyDir with a sizeLimit (disk_mib)
  /tmp     a subPath of the same emptyDir, so one sizeLimit covers both
The first container (compile for a compiled language, else run) copies /input/files into /work.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import InvalidRequest
from runtime.kube_frames import RUNNER_PATH
from runtime.languages.base import Language
from runtime.types import Limits, RunRequest

JsonObject = dict[str, Any]

GROUP = "sandbox.aevatar.dev"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "aevatar-sandbox"
LABEL_COMPONENT = "app.kubernetes.io/component"
COMPONENT = "sandbox-run"
LABEL_EXECUTION = f"{GROUP}/execution-id"
LABEL_EXECUTOR = f"{GROUP}/executor"
LABEL_LANGUAGE = f"{GROUP}/language"
ANNOTATION_EXECUTION = f"{GROUP}/execution-id"
ANNOTATION_OUTPUT_BYTES = f"{GROUP}/output-bytes"  # the output cap, for a run adopted after a restart

CONTAINER_RUN = "run"
CONTAINER_COMPILE = "compile"
INPUT_DIR = "/input"
WORK_DIR = "/work"
STDIN_KEY = "stdin"
# The ConfigMap is stored in etcd (1.5 MiB per object); binaryData is base64, so 4/3 of the bytes.
MAX_INPUT_BYTES = 768 * 1024

STAGE = f"cp -RL {INPUT_DIR}/files/. {WORK_DIR}/"


def container_script(*, stage: bool, stdin: bool, limits: Limits, artifacts_dir: str | None, runner: str | None) -> str:
    """The container's `sh -c` script. "$@" is the program's argv: the user's argv is never parsed by
    a shell. With `runner`, aevatar-runner (runtime/kube_frames.py) starts the program and reports."""
    steps = []
    if stage:
        steps.append(STAGE)
        if artifacts_dir:
            steps.append(f"mkdir -p {shlex.quote(artifacts_dir)}")
    launcher = ""
    if runner is not None:
        launcher = (
            f"{shlex.quote(runner)} --output-bytes {int(limits.output_bytes)}"
            f" --wall-time-ms {int(limits.wall_time_ms)} -- "
        )
    source = f"{INPUT_DIR}/{STDIN_KEY}" if stdin else "/dev/null"
    steps.append(f'exec {launcher}"$@" < {source}')
    return " && ".join(steps)


_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)")
_CONFIGMAP_KEY = re.compile(r"[-._A-Za-z0-9]+")


@dataclass(frozen=True, slots=True)
class KubernetesConfig:
    """Where and how sandbox Jobs run. Units live in the names."""

    namespace: str = "aevatar-sandbox"
    # language name → runner image (deploy/images/); a language without an image is unavailable.
    images: Mapping[str, str] = field(default_factory=lambda: {"python": "ghcr.io/aevatar/sandbox-runner-python:3.11"})
    image_pull_policy: str = "IfNotPresent"
    runtime_class_name: str | None = None  # e.g. "gvisor" (see deploy/README.md)
    service_account_name: str | None = "aevatar-sandbox-run"  # a ServiceAccount with no permissions
    run_as_user: int = 65532
    run_as_group: int = 65532
    executor_id: str = "executor"
    cpu_request_millicores: int = 250
    cpu_limit_millicores: int = 1000
    # The Job's activeDeadlineSeconds is the wall limit (plus the compile phase's) plus this slack,
    # which pays for container start-up; a pod that never starts is the platform's fault (ERROR).
    deadline_slack_ms: int = 2000
    ttl_seconds_after_finished: int = 300  # a backstop: a finished run's Job is deleted once read
    # Keep a finished run's Job (and pod) until its TTL instead of deleting it once its outcome is read.
    keep_finished_jobs: bool = False
    termination_grace_period_s: int = 1
    # A pod still not running after this long (image pull back-off, unschedulable, ...) ends as ERROR.
    start_timeout_ms: int = 120_000
    # The pod log API splits stdout from stderr only with the PodLogsQuerySplitStreams feature gate
    # (alpha in 1.32-1.36). Without it both streams arrive interleaved, reported as stdout.
    split_log_streams: bool = False
    # aevatar-runner in the image (runtime/pod_runner.c): keeps stdout and stderr apart, reports the
    # exact exit status, the limit that fired and the cgroup's usage. None: the program is the
    # container's process, and its end is read from the pod status alone.
    runner_path: str | None = RUNNER_PATH
    # Server-side watch timeout: the watch is re-opened from its resourceVersion after this.
    watch_timeout_s: int = 240
    watch_backoff_initial_ms: int = 250
    watch_backoff_max_ms: int = 10_000
    # Past the deadline, how long to wait for the cluster to report an end before giving up (ERROR).
    status_grace_ms: int = 30_000


def parse_images(spec: str, single_image_languages: str) -> dict[str, str]:
    """Runner images from a setting: "IMAGE" (every language in `single_image_languages`) or
    "lang=IMAGE,lang=IMAGE". Empty: {}. Raises ValueError naming the bad entry."""
    spec = spec.strip()
    if not spec:
        return {}
    if "=" not in spec:
        return {lang.strip(): spec for lang in single_image_languages.split(",") if lang.strip()}
    images: dict[str, str] = {}
    for entry in spec.split(","):
        lang, sep, image = entry.partition("=")
        if not sep or not lang.strip() or not image.strip():
            raise ValueError(f"AEVATAR_K8S_IMAGES: {entry!r} is not lang=IMAGE")
        images[lang.strip()] = image.strip()
    return images


def label_value(text: str) -> str:
    """`text` when it is a valid label value, else a stable hash of it (still a valid label value)."""
    if len(text) <= 63 and _LABEL_VALUE.fullmatch(text):
        return text
    return "h-" + hashlib.sha256(text.encode()).hexdigest()[:40]


def job_name(execution_id: str) -> str:
    """A DNS-1123 label (≤ 63 chars; the job controller copies it into a pod label), stable per id."""
    slug = re.sub(r"[^a-z0-9]+", "-", execution_id.lower()).strip("-")[:36].strip("-")
    digest = hashlib.sha256(execution_id.encode()).hexdigest()[:12]
    return f"run-{slug}-{digest}" if slug else f"run-{digest}"


def selector(executor_id: str | None = None) -> str:
    """The label selector of every sandbox object, or of one executor's."""
    parts = [f"{LABEL_MANAGED_BY}={MANAGED_BY}", f"{LABEL_COMPONENT}={COMPONENT}"]
    if executor_id is not None:
        parts.append(f"{LABEL_EXECUTOR}={label_value(executor_id)}")
    return ",".join(parts)


def labels(request: RunRequest, config: KubernetesConfig) -> dict[str, str]:
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: COMPONENT,
        LABEL_EXECUTION: label_value(request.execution_id),
        LABEL_EXECUTOR: label_value(config.executor_id),
        LABEL_LANGUAGE: label_value(request.language),
    }


def active_deadline_s(limits: Limits, language: Language, config: KubernetesConfig) -> int:
    total_ms = limits.wall_time_ms + config.deadline_slack_ms
    if language.compiled:
        total_ms += language.compile_limits.wall_time_ms
    return max(1, math.ceil(total_ms / 1000))


def memory_limit_mib(limits: Limits) -> int:
    """The in-memory emptyDir's pages are charged to the container, as the local backend's tmpfs is."""
    return limits.memory_mib + limits.disk_mib


def check_file_name(name: str) -> str:
    """A relative path below the working directory, by the shared policy (core/filenames.py);
    raises InvalidRequest otherwise."""
    from core.filenames import name_problem

    problem = name_problem(name)
    if problem is not None:
        raise InvalidRequest(f"invalid file name {name!r}: {problem}")
    return name


def input_files(request: RunRequest, language: Language) -> dict[str, bytes]:
    """The working directory's files: the source under the language's file name, and the request's files."""
    files: dict[str, bytes] = {}
    for name, text in request.files.items():
        files[check_file_name(name)] = text.encode()
    if language.source_file in files:
        raise InvalidRequest(f"file name {language.source_file!r} is reserved for the source")
    files[language.source_file] = request.code.encode()
    total = sum(len(v) for v in files.values()) + len(request.stdin)
    if total > MAX_INPUT_BYTES:
        raise InvalidRequest(f"code, files and stdin are {total} bytes; this backend takes at most {MAX_INPUT_BYTES}")
    return files


def _security_context(config: KubernetesConfig) -> JsonObject:
    return {
        "runAsNonRoot": True,
        "runAsUser": config.run_as_user,
        "runAsGroup": config.run_as_group,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(limits: Limits, config: KubernetesConfig) -> JsonObject:
    memory = f"{memory_limit_mib(limits)}Mi"
    return {
        "requests": {"cpu": f"{config.cpu_request_millicores}m", "memory": memory},
        "limits": {"cpu": f"{config.cpu_limit_millicores}m", "memory": memory},
    }


def _mounts() -> list[JsonObject]:
    return [
        {"name": "input", "mountPath": INPUT_DIR, "readOnly": True},
        {"name": "scratch", "mountPath": WORK_DIR},
        {"name": "scratch", "mountPath": "/tmp", "subPath": "tmp"},
    ]


def _container(
    name: str, image: str, script: str, argv: list[str], limits: Limits, language: Language, config: KubernetesConfig
) -> JsonObject:
    env = [{"name": "HOME", "value": "/tmp"}, {"name": "TMPDIR", "value": "/tmp"}]
    env += [{"name": k, "value": v} for k, v in sorted(language.env.items()) if k not in {"HOME", "TMPDIR"}]
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["/bin/sh", "-c", script, "aevatar-" + name, *argv],
        "workingDir": WORK_DIR,
        "env": env,
        "resources": _resources(limits, config),
        "securityContext": _security_context(config),
        "volumeMounts": _mounts(),
        "terminationMessagePolicy": "File",
    }


def build_job(request: RunRequest, language: Language, config: KubernetesConfig) -> JsonObject:
    """The batch/v1 Job that runs `request`. Raises InvalidRequest for an input it cannot carry."""
    language = language.for_source(request.code)  # Java: named after the code's public class
    image = config.images.get(language.name)
    if image is None:
        raise InvalidRequest(f"no runner image is configured for language {language.name!r}")
    files = input_files(request, language)  # validates before anything is created
    limits = request.limits
    name = job_name(request.execution_id)
    run_argv = language.run_argv(request.args, files=list(files), memory_mib=limits.memory_mib)
    compile_argv = language.compile_argv(files=list(files), memory_mib=language.compile_limits.memory_mib)
    init_containers: list[JsonObject] = []
    artifacts = language.artifacts_dir if language.artifacts_dir not in {"", "."} else None
    if compile_argv is not None:
        compile_script = container_script(
            stage=True, stdin=False, limits=language.compile_limits, artifacts_dir=artifacts, runner=config.runner_path
        )
        init_containers.append(
            _container(
                CONTAINER_COMPILE, image, compile_script, compile_argv, language.compile_limits, language, config
            )
        )
    run_script = container_script(
        stage=compile_argv is None, stdin=True, limits=limits, artifacts_dir=None, runner=config.runner_path
    )
    items = [{"key": STDIN_KEY, "path": STDIN_KEY}]
    items += [{"key": configmap_key(i), "path": f"files/{n}"} for i, n in enumerate(sorted(files))]
    pod_labels = labels(request, config)
    pod_spec: JsonObject = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "hostNetwork": False,
        "hostPID": False,
        "hostIPC": False,
        "terminationGracePeriodSeconds": config.termination_grace_period_s,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": config.run_as_user,
            "runAsGroup": config.run_as_group,
            "fsGroup": config.run_as_group,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(CONTAINER_RUN, image, run_script, run_argv, limits, language, config)],
        "volumes": [
            {"name": "input", "configMap": {"name": name, "optional": False, "defaultMode": 0o444, "items": items}},
            {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": f"{limits.disk_mib}Mi"}},
        ],
    }
    if init_containers:
        pod_spec["initContainers"] = init_containers
    if config.service_account_name is not None:
        pod_spec["serviceAccountName"] = config.service_account_name
    if config.runtime_class_name is not None:
        pod_spec["runtimeClassName"] = config.runtime_class_name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": config.namespace,
            "labels": pod_labels,
            "annotations": {
                ANNOTATION_EXECUTION: request.execution_id,
                ANNOTATION_OUTPUT_BYTES: str(limits.output_bytes),
            },
        },
        "spec": {
            "backoffLimit": 0,
            "completions": 1,
            "parallelism": 1,
            "activeDeadlineSeconds": active_deadline_s(limits, language, config),
            "ttlSecondsAfterFinished": config.ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": pod_labels, "annotations": {ANNOTATION_EXECUTION: request.execution_id}},
                "spec": pod_spec,
            },
        },
    }


def configmap_key(index: int) -> str:
    return f"f{index}"


def build_configmap(request: RunRequest, language: Language, config: KubernetesConfig, job_uid: str) -> JsonObject:
    """The input ConfigMap, owned by the Job (uid `job_uid`): the garbage collector deletes it with the Job."""
    files = input_files(request, language)
    binary = {configmap_key(i): base64.b64encode(files[n]).decode() for i, n in enumerate(sorted(files))}
    binary[STDIN_KEY] = base64.b64encode(request.stdin).decode()
    assert all(_CONFIGMAP_KEY.fullmatch(k) for k in binary)
    name = job_name(request.execution_id)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": config.namespace,
            "labels": labels(request, config),
            "annotations": {ANNOTATION_EXECUTION: request.execution_id},
            # No blockOwnerDeletion: setting it needs update on jobs/finalizers, which the executor lacks.
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": job_uid, "controller": True}
            ],
        },
        "immutable": True,
        "binaryData": binary,
    }
