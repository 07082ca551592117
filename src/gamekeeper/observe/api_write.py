"""What the ops API lets a caller write, checked before anything is stored (the same rules as `gk patch`).

A merge patch may touch `spec`, `metadata.labels` and `metadata.annotations` (and carry
`metadata.resourceVersion` to make the write conditional); the result must still be a valid object.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gamekeeper import admission
from gamekeeper.api.loading import InvalidObject

WRITABLE_META = ("labels", "annotations", "resourceVersion")


class BadBody(Exception):
    """422: each cause is (field path, message)."""

    def __init__(self, causes: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{f}: {m}" for f, m in causes))
        self.causes = causes


def split_patch(body: Any, where: str = "body") -> tuple[dict[str, Any], str | None]:
    """The patch without its resourceVersion, and that resourceVersion; BadBody names what is not writable."""
    if not isinstance(body, dict):
        raise BadBody([(where, 'expected a JSON object, e.g. {"spec":{"opsState":"Kill"}}')])
    causes: list[tuple[str, str]] = []
    for key in body:
        if key == "status":
            causes.append((f"{where}.status", "the status is written by the controller; patch spec instead"))
        elif key not in ("spec", "metadata", "apiVersion", "kind"):
            causes.append((f"{where}.{key}", "unknown field; a patch may set spec, metadata.labels and "
                           "metadata.annotations"))
    meta = body.get("metadata")
    rv: str | None = None
    if meta is not None:
        if not isinstance(meta, dict):
            causes.append((f"{where}.metadata", "expected an object"))
        else:
            for key in meta:
                if key not in WRITABLE_META:
                    causes.append((f"{where}.metadata.{key}", "cannot be changed; only labels and annotations "
                                   "(and resourceVersion, to write only if unchanged)"))
            raw = meta.get("resourceVersion")
            if raw is not None and not isinstance(raw, str | int):
                causes.append((f"{where}.metadata.resourceVersion", "expected a string"))
            elif raw is not None:
                rv = str(raw)
    if "spec" in body and not isinstance(body["spec"], dict):
        causes.append((f"{where}.spec", "expected an object"))
    if causes:
        raise BadBody(causes)
    patch = {k: v for k, v in body.items() if k not in ("apiVersion", "kind")}
    if isinstance(meta, dict):
        rest = {k: v for k, v in meta.items() if k != "resourceVersion"}
        if rest:
            patch["metadata"] = rest
        else:
            patch.pop("metadata", None)
    return patch, rv


def merged_checked(kind: str, current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """`current` with `patch` applied, checked by the admission path `gk patch` uses (gamekeeper/admission.py);
    BadBody lists every problem."""
    try:
        return admission.admit_patch(kind, dict(current), dict(patch), None)
    except InvalidObject as e:
        raise BadBody([_cause(line.removeprefix("patch: ")) for line in e.problems]) from None


def _cause(line: str) -> tuple[str, str]:
    field, sep, message = line.partition(": ")
    return (field, message) if sep and " " not in field else ("body", line)


def scale_replicas(body: Any) -> tuple[int, str | None]:
    """A Scale body ({"spec":{"replicas":N}}, optionally with metadata.resourceVersion)."""
    if not isinstance(body, dict):
        raise BadBody([("body", 'expected a JSON object, e.g. {"spec":{"replicas":3}}')])
    spec = body.get("spec")
    replicas = spec.get("replicas") if isinstance(spec, dict) else None
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise BadBody([("spec.replicas", f"expected a whole number >= 0, got {replicas!r}")])
    meta = body.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return replicas, None if rv is None else str(rv)
