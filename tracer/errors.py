"""One exception tree for trampwatch, with structured fields, and the exit codes
the command line maps them to. Only cli.py turns these into messages and codes.
"""

from __future__ import annotations

from typing import NamedTuple

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2
EXIT_CANNOT_EXECUTE = 126
EXIT_NOT_FOUND = 127


class TrampwatchError(Exception):
    """Root of every error trampwatch raises on purpose."""

    exit_code = EXIT_USAGE


class PolicyIssue(NamedTuple):
    """One problem found in a policy file, with its location."""

    path: str
    line: int
    column: int
    key_path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.key_path}: " if self.key_path else ""
        return f"{self.path}:{self.line}:{self.column}: {where}{self.message}"


class PolicyError(TrampwatchError):
    """A policy could not be loaded; `issues` holds every error found."""

    def __init__(self, issues: list[PolicyIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))


class CommandError(TrampwatchError):
    """The command to trace could not be started."""

    def __init__(self, command: str, reason: str, exit_code: int):
        self.command = command
        self.reason = reason
        self.exit_code = exit_code
        super().__init__(f"{command}: {reason}")


class TraceError(TrampwatchError):
    """The tracer lost control of a process (ptrace or procfs failed)."""

    exit_code = 1

    def __init__(self, message: str, pid: int | None = None):
        self.pid = pid
        super().__init__(message if pid is None else f"pid {pid}: {message}")


class NoSuchProcess(TraceError):
    """The process named does not exist (or has exited)."""


class AccessDenied(TraceError):
    """The process exists but may not be read or traced by us."""


class CapabilityMissing(TrampwatchError):
    """A kernel or host capability a command needs is absent."""

    exit_code = 1

    def __init__(self, capability: str, reason: str, fix: str = ""):
        self.capability = capability
        self.reason = reason
        self.fix = fix
        text = f"{capability}: {reason}"
        super().__init__(f"{text} (fix: {fix})" if fix else text)
