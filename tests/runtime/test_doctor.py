"""`aevatar-sandbox doctor` against this real host."""

from __future__ import annotations

import pytest

from aevatar_cli.doctor_cmd import doctor
from runtime.doctor import DEFAULT_REQUIRED, probe, render

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
