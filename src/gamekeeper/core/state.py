"""GameServer state from its pod (spec §4.1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gamekeeper.api.models import LIFECYCLE_STATE_KEY


def derive_state(pod: Mapping[str, Any]) -> str:
    """The `gs-state` label for a pod. A Running pod without a Ready condition gives "" as upstream does."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    phase = status.get("phase") or ""
    if phase == "Running":
        if meta.get("deletionTimestamp"):
            return "Deleting"
        lifecycle = (meta.get("labels") or {}).get(LIFECYCLE_STATE_KEY)
        if lifecycle == "Updating":
            return "Updating"
        if lifecycle == "PreparingUpdate":
            return "PreUpdate"
        if lifecycle == "PreparingDelete":
            return "PreDelete"
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Ready":
                return "Ready" if cond.get("status") == "True" else "NotReady"
        return ""
    if phase == "Failed":
        return "Crash"
    if phase == "Pending":
        return "Creating"
    return "Unknown"


def state_change_event(old: str, new: str) -> tuple[str, str] | None:
    """(type, message) of the GsStateChanged event for a state label change; none on the first write."""
    if old == new or old == "":
        return None
    return ("Warning" if new == "Crash" else "Normal", f"State turn from {old} to {new} ")


def ops_state_change_event(old: str, new: str) -> tuple[str, str] | None:
    """(type, message) for an opsState label change: Warning when a server goes into Maintaining."""
    if old == new or old == "":
        return None
    return ("Warning" if new == "Maintaining" else "Normal", f"OpsState turn from {old} to {new} ")
