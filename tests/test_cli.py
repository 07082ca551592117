"""The `gk` commands as a user meets them: output formats, up/down, watch, logs, exec, describe."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
import yaml

from gamekeeper.cli.printing import human_duration, table
from gamekeeper.runtime.local import alive
from tests.fleet import EXAMPLES, Fleet, ops, seed_yaml, state, wait_for


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (59, "59s"), (119, "119s"), (120, "2m"), (150, "2m30s"), (600, "10m"), (3 * 3600, "3h"),
     (3 * 3600 + 60 * 5, "3h5m"), (9 * 3600, "9h"), (50 * 3600, "2d2h"), (9 * 86400, "9d"), (800 * 86400, "2y70d")],
)
def test_ages_print_like_kubectl(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_tables_are_laid_out_like_kubectl() -> None:
    assert table(["NAME", "STATE"], [["minecraft-0", "Ready"], ["a", "NotReady"]]) == (
        "NAME          STATE\nminecraft-0   Ready\na             NotReady")


def test_empty_lists_and_unknown_things(fleet: Fleet) -> None:
    assert fleet.gk("get", "gs").stdout.strip() == "No resources found in default namespace."
    missing = fleet.gk("get", "gs", "nope", check=False)
    assert missing.returncode == 1 and 'gameserver.game.kruise.io "nope" not found' in missing.stderr
    bad = fleet.gk("get", "things", check=False)
    assert bad.returncode != 0 and 'unknown resource type "things"' in bad.stderr
    bad = fleet.gk("get", "gs", "-o", "toml", check=False)
    assert bad.returncode != 0


def test_output_formats(fleet: Fleet) -> None:
    fleet.apply_yaml(seed_yaml("minecraft.yaml"))
    one = json.loads(fleet.gk("get", "gss", "minecraft", "-o", "json").stdout)
    assert one["kind"] == "GameServerSet" and one["apiVersion"] == "game.kruise.io/v1alpha1"
    many = json.loads(fleet.gk("get", "gss", "-o", "json").stdout)
    assert many["kind"] == "List" and [i["metadata"]["name"] for i in many["items"]] == ["minecraft"]
    as_yaml = yaml.safe_load(fleet.gk("get", "gss", "minecraft", "-o", "yaml").stdout)
    assert as_yaml["spec"]["serviceQualities"][0]["name"] == "idle"
    assert fleet.gk("get", "gss", "-o", "name").stdout.strip() == "gameserverset.game.kruise.io/minecraft"
    wide = fleet.gk("get", "gss", "-o", "wide").stdout.splitlines()[0].split()
    assert wide[-1] == "SELECTOR"
    described = fleet.gk("describe", "gss", "minecraft").stdout
    assert "Name:" in described and "minecraft" in described and "Events:" in described


@pytest.mark.slow
def test_logs_exec_and_environment(fleet: Fleet) -> None:
    fleet.start()
    doc = seed_yaml("minecraft.yaml")
    doc["spec"]["replicas"] = 1
    doc["spec"]["gameServerTemplate"]["spec"]["containers"][0]["env"] = [{"name": "REGION", "value": "eu"}]
    fleet.apply_yaml(doc)
    fleet.wait_gs("ready", lambda gs: state(gs.get("minecraft-0", {})) == "Ready")
    env = fleet.gk("exec", "minecraft-0", "--", "sh", "-c", 'echo "$POD_NAME $POD_NAMESPACE $REGION $PWD"').stdout
    name, namespace, region, cwd = env.split()
    assert (name, namespace, region) == ("minecraft-0", "default", "eu")
    assert cwd.endswith("pods/default/minecraft-0/minecraft")
    failed = fleet.gk("exec", "minecraft-0", "--", "sh", "-c", "exit 7", check=False)
    assert failed.returncode == 7
    wait_for(lambda: "listening" in fleet.gk("logs", "minecraft-0").stdout.lower(), "server log line", 20)
    assert fleet.gk("logs", "minecraft-0", "--tail", "1").stdout.count("\n") <= 1
    wrong = fleet.gk("logs", "minecraft-0", "-c", "sidecar", check=False)
    assert wrong.returncode != 0 and 'container "sidecar"' in wrong.stderr


def read_until(proc: subprocess.Popen[bytes], needle: bytes, timeout: float) -> bytes:
    assert proc.stdout is not None
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            data += chunk
    return data


@pytest.mark.slow
def test_up_runs_a_live_table_and_ctrl_c_leaves_game_servers_running(fleet: Fleet) -> None:
    path = fleet.tmp / "demo.yaml"
    path.write_text(yaml.safe_dump(seed_yaml("demo-gs.yaml")))
    up = subprocess.Popen([sys.executable, "-m", "gamekeeper", "up", str(path)], env=fleet.env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out = read_until(up, b"demo-gs-2", 60)
        assert b"gameserverset.game.kruise.io/demo-gs created" in out
        fleet.wait_gs("three None", lambda gs: len(gs) == 3 and all(ops(g) == "None" for g in gs.values()))
        read_until(up, b"None", 10)
        pods = fleet.pods()
        ids = [p["status"]["containerStatuses"][0]["containerID"] for p in pods.values()]
        os.killpg(up.pid, signal.SIGINT)  # what a terminal's Ctrl-C does to the foreground group
        rest = read_until(up, b"game servers keep running", 30)
        assert up.wait(30) == 0
        assert b"game servers keep running" in rest
        assert all(alive(cid) for cid in ids)
        assert fleet.gk("get", "gs").stdout.count("Ready") == 3
    finally:
        if up.poll() is None:
            up.kill()
    down = fleet.gk("down").stdout
    assert "stopped 3 game server(s)" in down
    assert not any(alive(cid) for cid in ids)
    assert fleet.gk("get", "gs").stdout.startswith("No resources found")


@pytest.mark.slow
def test_events_watch_follows_new_warnings(fleet: Fleet) -> None:
    fleet.start()
    fleet.apply_yaml(seed_yaml("demo-gs.yaml"))
    fleet.wait_gs("three None", lambda gs: len(gs) == 3 and all(ops(g) == "None" for g in gs.values()))
    watcher = subprocess.Popen([sys.executable, "-m", "gamekeeper", "events", "--watch", "--type", "Warning"],
                               env=fleet.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        time.sleep(1.5)  # let the watcher print what exists and start waiting
        fleet.gk("exec", "demo-gs-1", "--", "./fault.sh")
        out = read_until(watcher, b"gameserver/demo-gs-1", 60)
        line = next(x for x in out.splitlines() if b"gameserver/demo-gs-1" in x)
        assert b"Warning" in line and b"OpsState turn from None to Maintaining" in line
    finally:
        watcher.terminate()
        watcher.wait(10)


def test_second_controller_is_refused(fleet: Fleet) -> None:
    fleet.start()
    second = fleet.gk("serve", check=False)
    assert second.returncode != 0 and "a controller is already running" in second.stderr


def test_image_map_errors_are_clear(fleet: Fleet) -> None:
    bad = fleet.tmp / "images.yaml"
    bad.write_text("images:\n  x:1:\n    path: does-not-exist\n    comand: [a]\n")
    fleet.env["GAMEKEEPER_IMAGES"] = str(bad)
    proc = fleet.gk("apply", "-f", str(EXAMPLES / "minecraft.yaml"), check=False)
    assert proc.returncode != 0
    assert "images.x:1.comand: unknown field" in proc.stderr
