"""Parsed GameServerSet specs, kept per set until its spec changes."""

from __future__ import annotations

from gamekeeper.api.models import GameServerSetSpec
from gamekeeper.ports.store import Obj, spec_version


class SpecCache:
    """By spec version, not resourceVersion: validating the whole spec again after each status update of the set
    is wasted work (the GameServer and recovery controllers read it on every reconcile)."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, str], tuple[tuple[str, object], GameServerSetSpec]] = {}

    def get(self, gss: Obj) -> GameServerSetSpec:
        key, version = (gss["metadata"]["namespace"], gss["metadata"]["name"]), spec_version(gss)
        cached = self._specs.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        spec = GameServerSetSpec.model_validate(gss["spec"])
        self._specs[key] = (version, spec)
        return spec
