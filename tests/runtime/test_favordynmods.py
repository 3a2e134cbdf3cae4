"""cgroup2 favordynmods is a host-wide change: the local backend makes it only when asked, and undoes it.

Each test starts from a known host state (the cgroup2 hierarchies remounted without favordynmods, with
one option of their own), runs a real backend (real bwrap, real cgroups) through check, one run and
close, and reads the mount options back from /proc/self/mountinfo. The host's options from before the
test are put back at its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from runtime.cgroups import cgroup2_options, discover_host, remount
from runtime.local import LocalBackend
from runtime.types import RunRequest
from tests.runtime.conftest import make_config, remove_state_dir

pytestmark = pytest.mark.sandbox

UID_BASE = 62650  # clear of the other runtime tests' uids (61000..., 62500, 62600-62601, 62700...)
OWN = "memory_recursiveprot"  # an option of the hierarchy's own, which a remount must keep


def options() -> dict[str, frozenset[str]]:
    with open("/proc/self/mountinfo") as f:
        return {point: frozenset(o for o in opts.split(",") if o) for point, opts in cgroup2_options(f.read())}


@pytest.fixture
def without_favordynmods() -> Iterator[dict[str, frozenset[str]]]:
    """Every cgroup2 hierarchy remounted with OWN and without favordynmods; the host's options after."""
    if discover_host().v2_dir is None:
        pytest.skip("no cgroup2 hierarchy on this host")  # the option exists only on cgroup2
    with open("/proc/self/mountinfo") as f:
        before = cgroup2_options(f.read())
    try:
        for point, _ in before:
            remount(point, OWN)
        state = options()
        assert all(opts == {OWN} for opts in state.values()), state
        yield state
    finally:
        for point, opts in before:
            remount(point, opts)


async def start_run_close(tmp_name: str, **overrides: object) -> tuple[dict[str, frozenset[str]], LocalBackend]:
    """A backend of its own: check, one hello world, close. The options while it was up."""
    state_dir = f"/tmp/aevatar-sandbox-tests-fdm-{tmp_name}"
    config = make_config(
        state_dir=state_dir,
        cgroup_prefix=f"aevatar-sandbox-test-fdm-{tmp_name}",
        uid_base=UID_BASE,
        max_slots=1,
        **overrides,
    )
    backend = LocalBackend(config)
    try:
        await backend.check()
        outcome = await backend.run(RunRequest(f"fdm-{tmp_name}", "python", "print('hello')"))
        assert outcome.stdout == b"hello\n", outcome
        during = options()
    finally:
        await backend.close()
        remove_state_dir(state_dir)
    return during, backend


async def test_by_default_the_backend_remounts_nothing(without_favordynmods: dict[str, frozenset[str]]) -> None:
    during, _ = await start_run_close("default")
    assert during == without_favordynmods, "the backend changed the host's cgroup2 mount options unasked"
    assert options() == without_favordynmods
    assert make_config().cgroup_favor_dynmods is False


async def test_opted_in_it_remounts_at_start_and_restores_the_original_options_at_close(
    without_favordynmods: dict[str, frozenset[str]],
) -> None:
    during, backend = await start_run_close("optin", cgroup_favor_dynmods=True)
    assert during == {point: {OWN, "favordynmods"} for point in without_favordynmods}, "not remounted, or OWN lost"
    assert options() == without_favordynmods, "close did not restore the original options"
    assert backend._remounted == []  # restored once: a second close changes nothing


async def test_opted_in_it_leaves_a_hierarchy_that_already_had_it_as_it_was(
    without_favordynmods: dict[str, frozenset[str]],
) -> None:
    for point in without_favordynmods:
        remount(point, f"{OWN},favordynmods")  # the host's own choice (a boot option, an admin)
    already = options()
    during, _ = await start_run_close("already", cgroup_favor_dynmods=True)
    assert during == already and options() == already, "close took away a favordynmods the host had set itself"


def test_the_executor_opts_in_only_through_its_setting(tmp_path: Path) -> None:
    from processors.runner import default_backend
    from streams.settings import Settings

    assert Settings.from_env({}).sandbox_cgroup_favor_dynmods is False
    for raw, expected in (("1", True), ("true", True), ("0", False)):
        settings = Settings.from_env({"AEVATAR_SANDBOX_CGROUP_FAVOR_DYNMODS": raw})
        assert settings.sandbox_cgroup_favor_dynmods is expected
        # Each its own state dir: default_backend holds a lock on it for the rest of this process.
        settings = replace(settings, sandbox_uid_base=UID_BASE, sandbox_state_dir=tmp_path / raw, warm_pool_size=0)
        assert default_backend(settings).config.cgroup_favor_dynmods is expected
