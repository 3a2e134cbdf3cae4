"""Validation rules: pure functions from a request and a policy to a verdict.

Used by the validation processor and by the gateway, so both refuse the same things
with the same field names.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Collection
from dataclasses import dataclass

import httpx

from core.filenames import Reserved, files_problem
from core.judging import judging_problem
from processors.policy import LIMIT_FIELDS, LIMIT_MINIMA, Policy
from runtime.languages import LANGUAGES
from runtime.types import Limits
from streams.records import ExecutionRequest, RequestLimits

# Matched whole with fullmatch: `$` would also accept a trailing newline ("id\n").
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True, slots=True)
class Rejection:
    code: str  # machine-readable, e.g. "limit_above_maximum"
    field: str  # dotted path of the request field at fault, e.g. "limits.memory_mib"
    message: str


def resolve_limits(requested: RequestLimits, policy: Policy) -> Limits | Rejection:
    values: dict[str, int] = {}
    for name in LIMIT_FIELDS:
        value = getattr(requested, name)
        if value is None:
            values[name] = getattr(policy.defaults, name)
            continue
        maximum, minimum = getattr(policy.maxima, name), getattr(LIMIT_MINIMA, name)
        if value > maximum:
            return Rejection(
                "limit_above_maximum", f"limits.{name}", f"limits.{name}={value} is above the policy maximum {maximum}"
            )
        if value < minimum:
            return Rejection(
                "limit_below_minimum", f"limits.{name}", f"limits.{name}={value} is below the minimum {minimum}"
            )
        values[name] = value
    return Limits(**values)


def file_names_rejection(names: list[str], language: str, code: str) -> Rejection | None:
    """The shared file-name policy (core/filenames.py), with what `language`'s adapter writes itself
    for this `code` (Java names its source file after the code's public class)."""
    adapter = LANGUAGES.get(language)
    if adapter is not None:
        adapter = adapter.for_source(code)
    reserved = Reserved(adapter.source_file, adapter.artifacts_dir) if adapter is not None else Reserved()
    problem = files_problem(names, reserved)
    if problem is None:
        return None
    return Rejection("invalid_file_name", f"files.{problem.name}", f"file name {problem.name!r} {problem.message}")


def banned_import(code: str, banned: frozenset[str]) -> str | None:
    """The first banned module that Python `code` imports, by AST; None if it imports none."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None  # the run reports the syntax error itself
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        for name in names:
            top = name.split(".")[0]
            if name in banned or top in banned:
                return name
    return None


def callback_url_problem(url: str) -> str | None:
    """Why the webhook dispatcher could not POST to `url`, or None.

    Parsed with httpx's URL parser, the one the delivery uses, so a URL accepted here never fails
    to parse at delivery ("http://[::1/" would, with InvalidURL).
    """
    if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
        return "must be an http(s) URL"
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        return f"is not a valid URL: {exc}"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return "must be an http(s) URL with a host"
    if parsed.port is not None and not 0 < parsed.port < 65536:
        return f"has an invalid port {parsed.port}"
    return None


def tests_rejection(request: ExecutionRequest, policy: Policy, languages: Collection[str]) -> Rejection | None:
    """The judging part of a request (core/judging.py): its tests, their sizes and limits, its checker."""
    checker = request.checker
    problem = judging_problem(
        [(t.stdin, t.args, t.expected_stdout) for t in request.tests],
        None
        if checker is None
        else (checker.kind, checker.abs_tolerance, checker.rel_tolerance, checker.language, checker.code),
        stdin=request.stdin,
        args=request.args,
        languages=languages,
    )
    if problem is not None:
        return Rejection("invalid_tests", problem[0], problem[1])
    total = len(request.code.encode()) + sum(len(c.encode()) for c in request.files.values())
    total += len((checker.code or "").encode()) if checker is not None else 0
    for i, case in enumerate(request.tests):
        stdin_bytes = len(case.stdin.encode())
        if stdin_bytes > policy.max_stdin_bytes:
            return Rejection(
                "stdin_too_large", f"tests[{i}].stdin", f"stdin is {stdin_bytes} bytes, above {policy.max_stdin_bytes}"
            )
        if len(case.args) > policy.max_args:
            return Rejection("too_many_args", f"tests[{i}].args", f"{len(case.args)} args, above {policy.max_args}")
        for j, arg in enumerate(case.args):
            if len(arg.encode()) > policy.max_arg_bytes or "\x00" in arg:
                return Rejection(
                    "invalid_arg", f"tests[{i}].args[{j}]", f"must be under {policy.max_arg_bytes} bytes, without NUL"
                )
        case_limits = resolve_limits(
            RequestLimits(wall_time_ms=case.wall_time_ms, cpu_time_ms=case.cpu_time_ms), policy
        )
        if isinstance(case_limits, Rejection):
            return Rejection(case_limits.code, f"tests[{i}].{case_limits.field.split('.')[-1]}", case_limits.message)
        total += stdin_bytes + len(case.expected_stdout.encode())
    if total > policy.max_total_input_bytes:
        return Rejection(
            "input_too_large", "tests", f"code, files and tests are {total} bytes, above {policy.max_total_input_bytes}"
        )
    if checker is not None and checker.code is not None and len(checker.code.encode()) > policy.max_code_bytes:
        return Rejection("code_too_large", "checker.code", f"checker.code is above {policy.max_code_bytes} bytes")
    return None


def validate(request: ExecutionRequest, policy: Policy, languages: Collection[str]) -> ExecutionRequest | Rejection:
    """The request with policy defaults filled in, or why it is refused."""
    if not _ID.fullmatch(request.id):
        return Rejection("invalid_id", "id", "id must be 1-128 characters of [A-Za-z0-9._-], starting alphanumeric")
    if not _TENANT.fullmatch(request.tenant):
        return Rejection("invalid_tenant", "tenant", "tenant must be 1-64 characters of [A-Za-z0-9._-]")
    if request.language not in languages:
        known = ", ".join(sorted(languages))
        return Rejection("unknown_language", "language", f"unknown language {request.language!r}; known: {known}")
    code_bytes = len(request.code.encode())
    if code_bytes == 0:
        return Rejection("empty_code", "code", "code is empty")
    if code_bytes > policy.max_code_bytes:
        return Rejection(
            "code_too_large", "code", f"code is {code_bytes} bytes, above the maximum {policy.max_code_bytes}"
        )
    stdin_bytes = len(request.stdin.encode())
    if stdin_bytes > policy.max_stdin_bytes:
        return Rejection(
            "stdin_too_large", "stdin", f"stdin is {stdin_bytes} bytes, above the maximum {policy.max_stdin_bytes}"
        )
    if len(request.args) > policy.max_args:
        return Rejection("too_many_args", "args", f"{len(request.args)} args, above the maximum {policy.max_args}")
    for i, arg in enumerate(request.args):
        if len(arg.encode()) > policy.max_arg_bytes or "\x00" in arg:
            return Rejection(
                "invalid_arg", f"args[{i}]", f"args[{i}] must be under {policy.max_arg_bytes} bytes, without NUL"
            )
    if len(request.files) > policy.max_files:
        return Rejection("too_many_files", "files", f"{len(request.files)} files, above the maximum {policy.max_files}")
    total = code_bytes + stdin_bytes
    names_rejection = file_names_rejection(list(request.files), request.language, request.code)
    if names_rejection is not None:
        return names_rejection
    for name, content in request.files.items():
        size = len(content.encode())
        if size > policy.max_file_bytes:
            return Rejection(
                "file_too_large", f"files.{name}", f"{name} is {size} bytes, above the maximum {policy.max_file_bytes}"
            )
        total += size
    if total > policy.max_total_input_bytes:
        return Rejection(
            "input_too_large", "files", f"code, stdin and files are {total} bytes, above {policy.max_total_input_bytes}"
        )
    if request.network and not policy.allow_network:
        return Rejection("network_not_allowed", "network", "network access is not allowed by the policy")
    if request.max_attempts is not None and not 1 <= request.max_attempts <= policy.max_attempts_ceiling:
        return Rejection(
            "invalid_max_attempts", "max_attempts", f"max_attempts must be 1 to {policy.max_attempts_ceiling}"
        )
    if request.callback_url is not None:
        problem = callback_url_problem(request.callback_url)
        if problem is not None:
            return Rejection("invalid_callback_url", "callback_url", f"callback_url {problem}")
    limits = resolve_limits(request.limits, policy)
    if isinstance(limits, Rejection):
        return limits
    judged = tests_rejection(request, policy, languages)
    if judged is not None:
        return judged
    banned = policy.banned_imports.get(request.language)
    if banned:
        for name, source in [("code", request.code), *((f"files.{n}", c) for n, c in request.files.items())]:
            if name != "code" and not name.endswith(".py"):
                continue
            module = banned_import(source, banned)
            if module is not None:
                return Rejection("banned_import", name, f"importing {module!r} is not allowed by the policy")
    from msgspec import structs

    return structs.replace(
        request,
        limits=RequestLimits(**{n: getattr(limits, n) for n in LIMIT_FIELDS}),
        max_attempts=request.max_attempts or policy.max_attempts,
    )
