"""The Runtime port: run a command inside a game server's container (for probes and `gk exec`), and restart one
container in place (for recovery)."""

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


class CommandRunner(Protocol):
    async def run_command(
        self, pod: dict[str, Any], container: str, command: Sequence[str], timeout: float
    ) -> ExecResult:
        """Like `exec`, but what the command starts to outlive it (a recovery restarting a helper process in its
        own session) is left running: unlike a probe's leftovers, that is the command's purpose."""
        ...


class ContainerRestarter(Protocol):
    async def restart_container(self, pod: dict[str, Any], container: str, token: str) -> str:
        """Restart one container of the pod in place (the pod, its other containers, address and host ports stay).

        `token` names this restart: asking again with the same token restarts nothing (crash safety). Returns a
        line saying how it was done, for the recovery record."""
        ...
