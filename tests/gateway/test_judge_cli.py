"""`aevatar-sandbox judge SOLUTION --tests DIR` against a real gateway, broker, processors and sandboxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from aevatar_cli.judge_cmd import CaseDirError, load_cases
from streams.settings import Settings
from tests.gateway.helpers import running_gateway
from tests.gateway.test_cli import _cli

C_DOUBLE = """
#include <stdio.h>
int main(void) {
    long n;
    if (scanf("%ld", &n) != 1) return 2;
    printf("%ld\\n", n == 7 ? n : 2 * n);  /* BUG when wrong */
    return 0;
}
"""


def write_cases(directory: Path, numbers: list[int]) -> None:
    directory.mkdir()
    for i, n in enumerate(numbers, start=1):
        (directory / f"{i}.in").write_text(f"{n}\n")
        (directory / f"{i}.out").write_text(f"{2 * n}\n")


def test_cases_are_taken_by_number_and_a_missing_out_is_named(tmp_path: Path) -> None:
    cases = tmp_path / "cases"
    write_cases(cases, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    (cases / "notes.txt").write_text("ignored")
    loaded = load_cases(cases)
    assert [c["stdin"] for c in loaded] == [f"{n}\n" for n in range(1, 11)]  # 10 after 9, not after 1
    (cases / "11.in").write_text("x")
    with pytest.raises(CaseDirError, match=r"11\.in has no 11\.out"):
        load_cases(cases)
    with pytest.raises(CaseDirError, match="no test cases"):
        load_cases(tmp_path)


@pytest.mark.kafka
@pytest.mark.sandbox
async def test_judge_prints_a_table_and_fails_unless_all_are_accepted(pipeline: Settings, tmp_path: Path) -> None:
    right, wrong = tmp_path / "right.c", tmp_path / "wrong.c"
    right.write_text(C_DOUBLE.replace("n == 7 ? n : 2 * n", "2 * n"))
    wrong.write_text(C_DOUBLE)
    write_cases(tmp_path / "cases", [1, 5, 7, 10])
    async with running_gateway(pipeline, max_wait_ms=120_000) as gw:
        env = {"AEVATAR_GATEWAY_URL": gw.url, "COLUMNS": "120"}
        code, out, err = await _cli(env, "judge", "right.c", "--tests", "cases", cwd=tmp_path)
        assert code == 0, err
        assert "4/4 accepted" in out and out.count("ACCEPTED") == 5  # four rows and the summary line
        code, out, err = await _cli(env, "judge", "wrong.c", "--tests", "cases", cwd=tmp_path)
        assert code == 1, err
        assert "3/4 accepted" in out and "WRONG_ANSWER" in out and "expected '14', got '7'" in out
        assert "FAILED (3/4)" in out
        code, _, err = await _cli(env, "judge", "right.c", "--tests", "nowhere", cwd=tmp_path)
        assert code == 2 and "nowhere is not a directory" in err
