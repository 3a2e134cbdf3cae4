"""A clean stop of `aevatar-sandbox up` leaves nothing of the executor behind (issue 29, point 5).

The real `up` (broker, processors, executor on real bubblewrap, gateway) runs one execution, gets
SIGTERM, and exits 0; then no process of its sandbox uids, no cgroup directory of its own
(`aevatar-sandbox-<uid base>`, in every hierarchy: the v1 memory one included) and no mount of its
state dir remain.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from runtime.cgroups import discover_host
from streams.settings import Settings
from tests.helpers import eventually, free_port

pytestmark = [pytest.mark.kafka, pytest.mark.sandbox]

UID_BASE = 63700  # clear of the other suites' executors (63000-63199, 63400, 64000+)
STATE_DIR = f"/tmp/aevatar-up-shutdown-tests-{os.getpid()}"
RUN_TIMEOUT_S = 120


def own_cgroup_dirs() -> list[str]:
    layout = discover_host()
    name = f"aevatar-sandbox-{UID_BASE}"
    bases = [b for b in [layout.v2_dir, *layout.v1_dirs.values()] if b is not None]
    return sorted(os.path.join(b, name) for b in bases if os.path.isdir(os.path.join(b, name)))


def uid_processes(slots: int = 64) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if UID_BASE <= os.stat(f"/proc/{pid}").st_uid < UID_BASE + slots:
                found.append(int(pid))
        except FileNotFoundError:
            continue
    return found


async def test_sigterm_of_up_leaves_no_cgroup_mount_or_process(settings: Settings, start_worker: Any) -> None:
    port = free_port()
    env = {
        "AEVATAR_SANDBOX_UID_BASE": str(UID_BASE),
        "AEVATAR_SANDBOX_STATE_DIR": STATE_DIR,
        "AEVATAR_GATEWAY_PORT": str(port),
        "AEVATAR_METRICS_PORT": "0",
    }
    worker = start_worker(settings, command="up", env=env)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=RUN_TIMEOUT_S) as client:

        async def ready() -> bool:
            try:
                return (await client.get("/readyz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(ready, timeout_s=RUN_TIMEOUT_S)
        response = await client.post("/v1/executions?wait=true", json={"language": "python", "code": "print(7)"})
        assert response.status_code == 200, response.text
        assert (response.json()["state"], response.json()["stdout"]) == ("SUCCEEDED", "7\n")
    assert own_cgroup_dirs() != []  # the executor made them: the check after the stop is not vacuous
    assert worker.stop() == 0, worker.log()[-4000:]
    assert own_cgroup_dirs() == [], worker.log()[-4000:]
    assert uid_processes() == []
    with open("/proc/self/mountinfo") as f:
        assert [line for line in f if STATE_DIR in line] == []
