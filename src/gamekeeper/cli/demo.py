"""`gk demo`: the seed's two scenarios, driven through the real `gk` commands, as a transcript."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXAMPLES = Path("examples")
TIMEOUT = 120.0


class DemoFailed(RuntimeError):
    pass


def _gk(state_dir: Path, *args: str, show: bool = True, check: bool = True) -> str:
    cmd = [sys.executable, "-m", "gamekeeper", *args[:1], "--state-dir", str(state_dir), *args[1:]]
    if args[:1] == ("exec",):
        # `gk exec NAME --state-dir DIR -- CMD`: options must come before `--`.
        split = args.index("--")
        cmd = [sys.executable, "-m", "gamekeeper", *args[:split], "--state-dir", str(state_dir), *args[split:]]
    if show:
        print(f"$ gk {' '.join(args)}", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if show:
        out = (proc.stdout + proc.stderr).rstrip()
        if out:
            print(out, flush=True)
        print(flush=True)
    if check and proc.returncode != 0:
        raise DemoFailed(f"gk {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def _gameservers(state_dir: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(_gk(state_dir, "get", "gs", "-o", "json", show=False))
    return {g["metadata"]["name"]: g for g in data["items"]}


def _wait(state_dir: Path, what: str, ok: Callable[[dict[str, dict[str, Any]]], bool]) -> None:
    print(f"# waiting until {what} …", flush=True)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if ok(_gameservers(state_dir)):
            return
        time.sleep(0.5)
    raise DemoFailed(f"timed out after {TIMEOUT:.0f}s waiting until {what}; see `gk get gs`, `gk events`, "
                     f"and {state_dir / 'controller.log'}")


def _ops(gs: dict[str, Any]) -> str:
    return str((gs.get("spec") or {}).get("opsState"))


def _state(gs: dict[str, Any]) -> str:
    return str((gs.get("status") or {}).get("currentState"))


def _result(gs: dict[str, Any]) -> str | None:
    """The last probe result of the first service quality, or None before the first probe reported."""
    conditions = (gs.get("status") or {}).get("serviceQualitiesConditions") or [{}]
    return conditions[0].get("result") if "status" in conditions[0] else None


def idle_scenario(state_dir: Path, examples: Path) -> None:
    print("# Scenario 1: idle game servers are WaitToBeDeleted, and scale-in removes them first\n")
    _gk(state_dir, "up", "-d", str(examples / "minecraft.yaml"))
    names = ["minecraft-0", "minecraft-1", "minecraft-2"]
    _wait(state_dir, "every game server is Ready and WaitToBeDeleted (probe: no player connected)",
          lambda gs: all(n in gs and _state(gs[n]) == "Ready" and _ops(gs[n]) == "WaitToBeDeleted" for n in names))
    _gk(state_dir, "get", "gs")
    _gk(state_dir, "exec", "minecraft-1", "--", "./player.sh", "join", "alice")
    _wait(state_dir, "minecraft-1 turns None (a player is connected)",
          lambda gs: _ops(gs.get("minecraft-1", {})) == "None")
    _gk(state_dir, "get", "gs")
    _gk(state_dir, "scale", "gss", "minecraft", "--replicas", "1")
    _wait(state_dir, "scale-in has removed the idle servers", lambda gs: list(gs) == ["minecraft-1"])
    _gk(state_dir, "get", "gs")
    _gk(state_dir, "events", "--for", "gs/minecraft-1")


def healthy_scenario(state_dir: Path, examples: Path) -> None:
    print("# Scenario 2: an unhealthy game server turns Maintaining and raises a Warning event\n")
    _gk(state_dir, "up", "-d", str(examples / "demo-gs.yaml"))
    names = ["demo-gs-0", "demo-gs-1", "demo-gs-2"]
    # None is also the opsState a new GameServer starts with: wait for the probe's own verdict.
    _wait(state_dir, "the probe has found every game server healthy (after initialDelaySeconds: 10 s)",
          lambda gs: all(n in gs and _state(gs[n]) == "Ready" and _ops(gs[n]) == "None"
                         and _result(gs[n]) == "healthy" for n in names))
    _gk(state_dir, "get", "gs")
    _gk(state_dir, "exec", "demo-gs-0", "--", "./fault.sh")
    _wait(state_dir, "demo-gs-0 turns Maintaining", lambda gs: _ops(gs.get("demo-gs-0", {})) == "Maintaining")
    _gk(state_dir, "get", "gs")
    _gk(state_dir, "events", "--type", "Warning")


def _recovery(gs: dict[str, Any]) -> dict[str, Any]:
    return dict((gs.get("status") or {}).get("recovery") or {})


def recovery_scenario(state_dir: Path, examples: Path) -> None:
    print("# Scenario 2 with automatic recovery (docs/recovery.md): the helper dies, the recovery action restarts\n"
          "# it, the probe says healthy again; the game process and its players are untouched\n")
    _gk(state_dir, "up", "-d", str(examples / "demo-gs-recovery.yaml"))
    names = ["demo-gs-0", "demo-gs-1", "demo-gs-2"]
    _wait(state_dir, "the probe has found every game server healthy (after initialDelaySeconds: 10 s)",
          lambda gs: all(n in gs and _state(gs[n]) == "Ready" and _ops(gs[n]) == "None"
                         and _result(gs[n]) == "healthy" for n in names))
    _gk(state_dir, "get", "gs", "-o", "wide")
    _gk(state_dir, "exec", "demo-gs-0", "--", "cat", "server.pid")
    _gk(state_dir, "exec", "demo-gs-0", "--", "./fault.sh")
    _wait(state_dir, "demo-gs-0's recovery has run", lambda gs: bool(_recovery(gs.get("demo-gs-0", {})).get("attempt")))
    _gk(state_dir, "get", "gs", "-o", "wide")
    _wait(state_dir, "the probe says healthy again and demo-gs-0 is back to None",
          lambda gs: _recovery(gs.get("demo-gs-0", {})).get("phase") == "Healthy"
          and _ops(gs.get("demo-gs-0", {})) == "None")
    _gk(state_dir, "get", "gs", "-o", "wide")
    print("# the game process kept running: the same pid as before the fault\n", flush=True)
    _gk(state_dir, "exec", "demo-gs-0", "--", "cat", "server.pid")
    _gk(state_dir, "describe", "gs", "demo-gs-0")
    _gk(state_dir, "events", "--for", "gs/demo-gs-0")


def _free(gs: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(n for n, g in gs.items() if _ops(g) == "None" and _state(g) == "Ready")


def autoscale_scenario(state_dir: Path, examples: Path) -> None:
    print("# Autoscaling (a): the seed's minecraft set plus a ScaledObject (minReplicaCount: 1); no gk scale\n")
    _gk(state_dir, "up", "-d", str(examples / "minecraft.yaml"), str(examples / "minecraft-scaledobject.yaml"))
    _wait(state_dir, "minecraft-1 is Ready", lambda gs: _state(gs.get("minecraft-1", {})) == "Ready")
    _gk(state_dir, "exec", "minecraft-1", "--", "./player.sh", "join", "alice")
    # On a loaded machine the window may already have passed when this looks: the idle ones may be gone.
    _wait(state_dir, "the probe finds minecraft-0 and minecraft-2 idle (WaitToBeDeleted) and minecraft-1 busy",
          lambda gs: _ops(gs.get("minecraft-1", {})) == "None" and _result(gs.get("minecraft-1", {})) == "active"
          and all(n not in gs or _ops(gs[n]) == "WaitToBeDeleted" for n in ("minecraft-0", "minecraft-2")))
    _gk(state_dir, "get", "gs")
    _wait(state_dir, "the autoscaler has removed the idle servers by itself",
          lambda gs: list(gs) == ["minecraft-1"])
    _gk(state_dir, "get", "gs")
    _gk(state_dir, "get", "so")
    _gk(state_dir, "events", "--for", "so/minecraft")
    _gk(state_dir, "down")

    print("# Autoscaling (b): players take free servers (Allocated); minAvailable 2 keeps two free, maxAvailable 3 "
          "caps them\n")
    _gk(state_dir, "up", "-d", str(examples / "players.yaml"))
    _wait(state_dir, "two free servers (probe result 0 players: None)",
          lambda gs: len(gs) == 2 and all(_result(g) == "0" for g in gs.values()) and len(_free(gs)) == 2)
    _gk(state_dir, "get", "gs")
    for i, player in enumerate(("alice", "bob")):
        _gk(state_dir, "exec", f"players-{i}", "--", "./player.sh", "join", player)
        def taken(gs: dict[str, dict[str, Any]], i: int = i) -> bool:
            return _ops(gs.get(f"players-{i}", {})) == "Allocated" and len(gs) == 3 + i and len(_free(gs)) == 2

        _wait(state_dir, f"players-{i} is Allocated and a new free server keeps two free", taken)
        _gk(state_dir, "get", "gs")
    for i, player in enumerate(("alice", "bob")):
        _gk(state_dir, "exec", f"players-{i}", "--", "./player.sh", "leave", player)
    _wait(state_dir, "the players left: four free servers, capped to maxAvailable 3",
          lambda gs: len(gs) == 3 and len(_free(gs)) == 3)
    _gk(state_dir, "get", "gs")
    _gk(state_dir, "get", "so")
    _gk(state_dir, "events", "--for", "so/players")


def run_demo(scenario: str, state_dir: Path, keep: bool, examples: Path = EXAMPLES) -> int:
    scenarios = {"idle": idle_scenario, "healthy": healthy_scenario, "recovery": recovery_scenario,
                 "autoscale": autoscale_scenario}
    if scenario not in scenarios:
        print(f"error: unknown scenario {scenario!r}; use idle, healthy, recovery or autoscale", file=sys.stderr)
        return 2
    if not (examples / "images.yaml").exists():
        print(f"error: {examples}/images.yaml not found; run gk demo from the repository root", file=sys.stderr)
        return 2
    try:
        scenarios[scenario](state_dir, examples)
    except DemoFailed as e:
        print(f"demo failed: {e}", file=sys.stderr)
        _gk(state_dir, "down", check=False)
        return 1
    if keep:
        print(f"# the fleet keeps running (state in {state_dir}); stop it with: gk down --state-dir {state_dir}")
    else:
        _gk(state_dir, "down")
    return 0
