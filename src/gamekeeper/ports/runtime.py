"""The Runtime port: run a command inside a game server's container (for probes and `gk exec`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


class ContainerNotRunning(Exception):
    pass


class Runtime(Protocol):
    async def exec(
        self, pod: dict[str, Any], container: str, command: Sequence[str], timeout: float
    ) -> ExecResult:
        """Run `command` in the container's working directory and environment; kill it at `timeout`."""
        ...
