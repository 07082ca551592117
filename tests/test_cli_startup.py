"""`gk` loads only what a command uses: which modules `gk --help` and `gk get` import (not how fast they run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Never needed to print help or to read the store: the controller, its I/O stack, the Kubernetes client,
# pydantic (our models, and typer >= 0.29's parameter checks: pyproject keeps typer below), YAML, rich (only
# errors and live tables print through it).
NEVER = [
    "asyncio", "aiohttp", "kubernetes_asyncio", "prometheus_client", "yaml", "rich", "pydantic",
    "gamekeeper.api.models", "gamekeeper.api.loading", "gamekeeper.control", "gamekeeper.observe",
    "gamekeeper.embedded.fleet", "gamekeeper.runtime.local", "gamekeeper.runtime.images",
    "gamekeeper.kube.client", "gamekeeper.kube.operator", "gamekeeper.kube.manifests",
]


def imported_by(tmp_path: Path, *args: str) -> set[str]:
    env = {**os.environ, "GAMEKEEPER_HOME": str(tmp_path / "state")}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "gamekeeper", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}


def loaded(modules: set[str], name: str) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


@pytest.mark.parametrize("args", [["--help"], ["get", "gs"], ["get", "gss", "-o", "json"], ["get", "pod"],
                                  ["get", "gs", "-l", "game.kruise.io/owner-gss=minecraft", "--field-selector",
                                   "spec.opsState=WaitToBeDeleted", "--sort-by", ".metadata.name"]],
                         ids=" ".join)
def test_light_commands_do_not_load_heavy_modules(tmp_path: Path, args: list[str]) -> None:
    modules = imported_by(tmp_path, *args)
    assert "gamekeeper.cli.main" in modules  # the measurement sees our imports at all
    assert [name for name in NEVER if loaded(modules, name)] == []


def test_commands_that_need_them_still_load_them(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: game.kruise.io/v1alpha1\nkind: GameServerSet\nmetadata: {name: x}\nspec: {}\n")
    env = {**os.environ, "GAMEKEEPER_HOME": str(tmp_path / "state")}
    proc = subprocess.run([sys.executable, "-m", "gamekeeper", "apply", "-f", str(bad)], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    # The validation (pydantic models, YAML) and the red error text (rich) are there when they are needed.
    assert proc.returncode == 1 and "spec.replicas" in proc.stderr and "nothing was applied" in proc.stderr
