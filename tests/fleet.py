"""Test helpers: run the real `gk` CLI and a real controller against a temporary state directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.procs import working_in

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
IMAGES = EXAMPLES / "images.yaml"


class Fleet:
    """A state directory, the `gk` CLI pointed at it, and (optionally) a running controller."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.state_dir = tmp / "state"
        self.controller: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "GAMEKEEPER_HOME": str(self.state_dir), "GAMEKEEPER_IMAGES": str(IMAGES)}

    def gk(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "gamekeeper", *args], capture_output=True, text=True, env=self.env,
            input=input, timeout=120, check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"gk {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def start(self, *extra: str) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.tmp / "controller.log", "ab")  # noqa: SIM115 - closed with the process
        self.controller = subprocess.Popen(
            [sys.executable, "-m", "gamekeeper", "serve", "--log-level", "debug", *extra],
            env=self.env, stdout=log, stderr=log, start_new_session=True,
        )
        wait_for(lambda: (self.state_dir / "controller.pid").exists(), "controller start", 20)

    def kill_controller(self, sig: int = signal.SIGKILL) -> None:
        assert self.controller is not None
        self.controller.send_signal(sig)
        self.controller.wait(timeout=20)
        self.controller = None

    def stop(self) -> None:
        if self.controller is not None:
            self.kill_controller(signal.SIGTERM)
        self.gk("down", check=False)

    def log(self) -> str:
        path = self.tmp / "controller.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def apply_yaml(self, doc: dict[str, Any] | str, name: str = "fleet.yaml") -> subprocess.CompletedProcess[str]:
        path = self.tmp / name
        path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
        return self.gk("apply", "-f", str(path))

    def gameservers(self) -> dict[str, dict[str, Any]]:
        data = json.loads(self.gk("get", "gs", "-o", "json").stdout)
        return {g["metadata"]["name"]: g for g in data["items"]}

    def pods(self) -> dict[str, dict[str, Any]]:
        data = json.loads(self.gk("get", "pod", "-o", "json").stdout)
        return {p["metadata"]["name"]: p for p in data["items"]}

    def wait_gs(self, what: str, ok: Callable[[dict[str, dict[str, Any]]], bool], timeout: float = 90) -> dict[
            str, dict[str, Any]]:
        last: dict[str, dict[str, Any]] = {}

        def check() -> bool:
            nonlocal last
            last = self.gameservers()
            return ok(last)

        try:
            wait_for(check, what, timeout)
        except AssertionError:
            summary = {n: (ops(g), state(g)) for n, g in last.items()}
            raise AssertionError(
                f"timed out waiting for {what}; last: {summary}\n--- log:\n{self.log()[-4000:]}") from None
        return last


def ops(gs: dict[str, Any]) -> str:
    return str((gs.get("spec") or {}).get("opsState"))


def state(gs: dict[str, Any]) -> str:
    return str((gs.get("status") or {}).get("currentState"))


def wait_for(check: Callable[[], bool], what: str, timeout: float = 60, interval: float = 0.2,
             detail: Callable[[], str] | None = None) -> None:
    """Poll `check`; on time-out fail with `what` and, when given, `detail()` (a log tail, say)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f"\n{detail()}" if detail else ""))


def seed_yaml(name: str, fast: bool = True) -> dict[str, Any]:
    """The seed's YAML; `fast` shortens initialDelaySeconds/periodSeconds as the issue allows for tests."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    if fast:
        for sq in doc["spec"]["serviceQualities"]:
            # Long enough for the demo images to start their helper processes even on a loaded machine.
            sq["initialDelaySeconds"] = 3
            sq["periodSeconds"] = 1
    return doc


def processes_under(directory: Path) -> list[int]:
    return [pid for pid, _, _ in working_in(directory)]
