"""The state directory and what is remembered in it; light, so every `gk` command may use it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gamekeeper.runtime.pidlock import PidLock

HOME_ENV = "GAMEKEEPER_HOME"
API_FILE = "api.json"  # where a controller serving the ops API says where (`gk dashboard` reads it)


def resolve_state_dir(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    env = os.environ.get(HOME_ENV)
    return Path(env) if env else Path(".gamekeeper")


def running_controller_pid(state_dir: Path) -> int | None:
    """The pid of the controller holding the lock, or None."""
    return PidLock(state_dir, "controller").holder()


def remember_images(state_dir: Path, path: Path) -> None:
    config = read_config(state_dir)
    config["images"] = str(path.resolve())
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def read_config(state_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((state_dir / "config.json").read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def running_api_url(state_dir: Path) -> str | None:
    """The API address of the controller running for this state directory, if it serves one."""
    pid = running_controller_pid(state_dir)
    try:
        data = json.loads((state_dir / API_FILE).read_text())
    except (OSError, ValueError):
        return None
    if pid is None or not isinstance(data, dict) or data.get("pid") != pid:
        return None
    url = data.get("url")
    return url if isinstance(url, str) else None
