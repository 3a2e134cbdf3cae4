"""`aevatar-sandbox doctor` against this real host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aevatar_cli.doctor_cmd import doctor, favordynmods_measured
from runtime.doctor import DEFAULT_REQUIRED, DoctorReport, probe, render

pytestmark = pytest.mark.sandbox


def test_doctor_probe_on_this_host() -> None:
    report = probe()
    names = {f.name for f in report.features}
    assert names >= DEFAULT_REQUIRED
    assert report.ok, render(report)
    text = render(report)
    assert "bubblewrap" in text and "0.8" in text and "namespace.cgroup" in text and "seccomp" in text


def test_doctor_reports_a_missing_bubblewrap() -> None:
    report = probe(bwrap="/nonexistent/bwrap")
    assert not report.ok and "bubblewrap" in report.missing_required()


def test_doctor_command_prints_and_succeeds(capsys: pytest.CaptureFixture[str]) -> None:
    doctor()
    out = capsys.readouterr().out
    assert "All required isolation features are present" in out


def test_doctor_reports_favordynmods_as_opt_in_with_its_measured_benefit(tmp_path: Path) -> None:
    from runtime.cgroups import discover_host

    if discover_host().v2_dir is None:
        pytest.skip("no cgroup2 hierarchy on this host: the feature is not reported")
    result = tmp_path / "favordynmods-latest.json"
    assert favordynmods_measured(result) == ""  # never measured: the doctor says how to measure
    unmeasured = {f.name: f for f in probe().features}["cgroup.favordynmods"]
    assert "python -m bench.favordynmods" in unmeasured.detail and "not measured" in unmeasured.detail
    if not unmeasured.ok:
        assert "AEVATAR_SANDBOX_CGROUP_FAVOR_DYNMODS=1" in unmeasured.detail
        assert "restores it at close" in unmeasured.detail
    side = {"median": 0.0, "n": 20}
    result.write_text(
        json.dumps(
            {
                "measured_at": "2026-12-07T20:09:48Z",
                "move_us": {"off": {**side, "median": 418.1}, "on": {**side, "median": 110.0}},
                "run_ms": {"off": {**side, "median": 25.9}, "on": {**side, "median": 25.6}, "ratio_on_off": 0.988},
            }
        )
    )
    line = favordynmods_measured(result)
    assert "2026-12-07T20:09:48Z" in line and "418 -> 110 us" in line and "25.9 -> 25.6 ms (0.99x)" in line
    measured = {f.name: f for f in probe(favordynmods_measured=line).features}["cgroup.favordynmods"]
    assert line in measured.detail and "not measured" not in measured.detail
    text = render(DoctorReport((measured,), frozenset()))
    assert ("ok" if measured.ok else "off") in text.split("cgroup.favordynmods")[0] and "MISSING" not in text
