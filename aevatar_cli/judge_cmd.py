"""`aevatar-sandbox judge SOLUTION --tests DIR`: judge one program on a directory of cases.

Each case is a pair `N.in` / `N.out` (stdin and the expected stdout), taken in the order of N.
The program is submitted once as a judged execution (compiled once, each case in a fresh
sandbox); a progress bar follows it to its end, then a table gives each case's verdict. The exit
code is 0 only when every case is ACCEPTED.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import typer

NOT_ALL_ACCEPTED_EXIT = 1
_CASE = re.compile(r"(?P<n>[0-9]+)\.in")  # fullmatch
POLL_S = 0.2


class CaseDirError(ValueError):
    """A tests directory that does not hold N.in / N.out pairs (the message names the file)."""


def load_cases(directory: Path) -> list[dict[str, Any]]:
    """The cases of `directory`, by their number: each N.in with its N.out."""
    if not directory.is_dir():
        raise CaseDirError(f"{directory} is not a directory")
    numbered: list[tuple[int, Path]] = []
    for path in directory.iterdir():
        match = _CASE.fullmatch(path.name)
        if match is not None:
            numbered.append((int(match["n"]), path))
    if not numbered:
        raise CaseDirError(f"{directory} has no test cases (files named N.in with N.out beside them)")
    cases = []
    for _, given in sorted(numbered):
        wanted = given.with_suffix(".out")
        if not wanted.is_file():
            raise CaseDirError(f"{given} has no {wanted.name} beside it")
        cases.append(
            {"stdin": given.read_text(errors="replace"), "expected_stdout": wanted.read_text(errors="replace")}
        )
    return cases


def _table(execution: dict[str, Any]) -> Any:
    from rich.table import Table

    judgement = execution.get("judgement") or {}
    table = Table(title=f"{execution['id']}: {judgement.get('passed', 0)}/{judgement.get('total', 0)} accepted")
    for column in ("case", "verdict", "time ms", "memory KiB", "detail"):
        table.add_column(column, justify="right" if column.endswith(("ms", "KiB", "case")) else "left")
    for case in judgement.get("cases", []):
        verdict = case["verdict"]
        colour = "green" if verdict == "ACCEPTED" else "yellow" if verdict == "SKIPPED" else "red"
        detail = case.get("message") or case.get("limit") or ""
        if verdict == "RUNTIME_ERROR" and not detail:
            detail = f"signal {case['signal']}" if case.get("signal") else f"exit {case.get('exit_code')}"
        table.add_row(
            str(case["index"] + 1),
            f"[{colour}]{verdict}[/{colour}]",
            str(case.get("run_ms", 0)),
            str(case.get("memory_peak_kib", 0)),
            detail,
        )
    return table


def register(app: typer.Typer) -> None:
    @app.command("judge")
    def judge_cmd(
        solution: Path = typer.Argument(..., exists=True, dir_okay=False, help="The program to judge."),
        tests: Path = typer.Option(..., "--tests", "-t", help="A directory of cases: N.in and N.out."),
        language: str | None = typer.Option(None, "--language", "-l", help="Default: from the file extension."),
        checker: str = typer.Option(
            "trailing_whitespace", "--checker", help="exact, trailing_whitespace, tokens or float."
        ),
        wall_time_ms: int | None = typer.Option(None, "--wall-time-ms", help="Each case's wall time limit."),
        stop_on_first_failure: bool = typer.Option(False, "--stop-on-first-failure", help="Skip the rest."),
    ) -> None:
        """Judge SOLUTION on the cases in --tests DIR: a progress bar, a table of verdicts, exit 0 if all pass."""
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from aevatar_cli.client_cmds import _fail, _gateway_client
        from gateway.client import language_for

        lang = language or language_for(solution)
        if lang is None:
            _fail(f"cannot tell the language of {solution.name} from its extension; pass --language")
        try:
            cases = load_cases(tests)
        except CaseDirError as exc:
            _fail(str(exc), 2)
        if wall_time_ms is not None:
            cases = [{**c, "wall_time_ms": wall_time_ms} for c in cases]
        body = {
            "language": lang,
            "code": solution.read_text(errors="replace"),
            "tests": cases,
            "checker": {"kind": checker},
            "stop_on_first_failure": stop_on_first_failure,
        }
        console = Console(stderr=True)
        with _gateway_client() as client:
            accepted = client.submit(body)
            execution_id = accepted["id"]
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            with Progress(*columns, console=console, transient=False) as progress:
                task = progress.add_task(f"{execution_id} {accepted['state']}", total=len(cases))
                while True:
                    execution = client.get(execution_id)
                    done = (execution.get("judgement") or {}).get("cases", [])
                    judged = sum(1 for c in done if c["verdict"] != "SKIPPED")
                    progress.update(task, description=f"{execution_id} {execution['state']}", completed=judged)
                    if execution.get("finished_at") is not None:
                        progress.update(task, completed=len(cases))
                        break
                    time.sleep(POLL_S)
        out = Console()
        if execution["state"] == "COMPILE_ERROR":
            console.print(execution.get("compile_output", ""), highlight=False, markup=False)
        out.print(_table(execution))
        judgement = execution.get("judgement") or {}
        all_passed = judgement.get("total") == len(cases) and judgement.get("passed") == len(cases)
        verdict = "ACCEPTED" if all_passed else execution["state"]
        out.print(f"{'[green]' if all_passed else '[red]'}{verdict}[/] ({judgement.get('passed', 0)}/{len(cases)})")
        if not all_passed:
            raise typer.Exit(NOT_ALL_ACCEPTED_EXIT)
