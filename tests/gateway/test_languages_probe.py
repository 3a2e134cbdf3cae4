"""The gateway's host probe sees a toolchain that lands after start (make up installs them in the
background): a failed probe is run again after its retry interval; a good one is kept."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.languages import HostProbe
from runtime.languages.base import Language


async def test_a_language_whose_toolchain_lands_later_becomes_available(tmp_path: Path) -> None:
    tool = tmp_path / "tool"  # not there yet: the probe fails
    lang = Language(
        name="late",
        source_file="main.x",
        run=(str(tool),),
        version_probe=(str(tool),),
        self_test_code="",
        self_test_stdin=b"",
        self_test_expected_stdout=b"",
    )
    now = [0.0]
    probe = HostProbe({"late": lang}, retry_s=30, clock=lambda: now[0])
    (first,) = await probe.languages()
    assert not first.available
    tool.write_text("#!/bin/sh\necho late 1.2.3\n")
    os.chmod(tool, 0o755)
    now[0] = 10.0
    assert not (await probe.languages())[0].available  # within the retry interval: the cached failure
    now[0] = 31.0
    (landed,) = await probe.languages()
    assert landed.available and landed.version == "1.2.3"
    tool.unlink()
    now[0] = 100.0
    assert (await probe.languages())[0].available  # a good probe is kept
