"""The `operator` command itself (what `gk operator` runs): a separate process, a kubeconfig, the emulator,
the seed's scenario through each probe path, and a clean exit on SIGTERM (releasing its Lease)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
import yaml

from tests.kube.conftest import Cluster, seed_yaml

pytestmark = pytest.mark.asyncio


def kubeconfig(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": "not-checked"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}],
    }))
    return path


@pytest.mark.parametrize("probe_path", ["exec", "kruise"])
async def test_the_operator_command_drives_the_seed_scenario(
    cluster: Cluster, tmp_path: Path, probe_path: str
) -> None:
    if probe_path == "kruise":
        cluster.install_kruise()
    log = tmp_path / "operator.log"
    env = {k: v for k, v in os.environ.items() if k not in ("KUBERNETES_SERVICE_HOST", "POD_NAME")}
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gamekeeper.kube.cli", "operator",
            "--kubeconfig", str(kubeconfig(tmp_path, cluster.url)), "--lease-namespace", "default",
            "--identity", "cli-test", "--retry-period", "0.5", "--renew-deadline", "3", "--lease-duration", "5",
            stdout=out, stderr=out, env=env,
        )
    try:
        await cluster.apply(seed_yaml("demo-gs.yaml"))
        names = ["demo-gs-0", "demo-gs-1", "demo-gs-2"]
        await cluster.eventually("all healthy servers None", lambda: all(
            cluster.gs_summary().get(n) == ("Ready", "None") for n in names), timeout=60)
        await cluster.client().exec("default", "demo-gs-1", "minecraft", ["./fault.sh"], 5)
        await cluster.eventually("the Warning event", lambda: [e["note"] for e in cluster.events(type="Warning")] == [
            "OpsState turn from None to Maintaining "], timeout=60)
        assert cluster.gs_summary()["demo-gs-1"] == ("Ready", "Maintaining")
        lease = cluster.world.find("Lease", "default", "gamekeeper-operator")
        assert lease["spec"]["holderIdentity"] == "cli-test"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    text = log.read_text()
    assert code == 0, text[-3000:]
    expected = "exec through the API" if probe_path == "exec" else "OpenKruise PodProbeMarker"
    assert f"probe path: {expected}" in text, text[-3000:]
    assert "became leader" in text and "released lease" in text
    assert cluster.world.find("Lease", "default", "gamekeeper-operator")["spec"].get("holderIdentity") is None


async def test_the_operator_command_says_what_is_wrong(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gamekeeper.kube.cli", "operator", "--kubeconfig", str(missing),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and b"cannot load Kubernetes credentials" in err, err
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gamekeeper.kube.cli", "operator", "--retry-period", "20",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2 and b"retry period < renew deadline < lease duration" in err, err
