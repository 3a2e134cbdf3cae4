"""One exception tree for the runtime package."""

from __future__ import annotations


class RuntimeSandboxError(Exception):
    """Base of every error raised by the runtime package."""


class UnknownLanguage(RuntimeSandboxError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown language {name!r}")


class InvalidRequest(RuntimeSandboxError):
    """The request cannot be run as given (a bad file name, a limit out of range)."""


class IsolationUnavailable(RuntimeSandboxError):
    """A feature the isolation policy requires is missing on this host: refuse to run."""

    def __init__(self, missing: list[str]) -> None:
        self.missing = list(missing)
        super().__init__(
            "refusing to run code: required isolation feature(s) missing on this host: "
            + ", ".join(self.missing)
            + " (run `aevatar-sandbox doctor` for details)"
        )


class SandboxSetupError(RuntimeSandboxError):
    """The supervisor could not set up or tear down a sandbox (the platform's fault)."""


class BackendClosed(RuntimeSandboxError):
    """The backend was closed and accepts no more runs."""
