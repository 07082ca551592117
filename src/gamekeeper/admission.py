"""One admission path for `gk apply`, `gk patch`/`label`/`annotate` and the ops API's writes: what one accepts,
the others accept, nothing more.

A patch is merged into the stored object and the result goes through the same checks as an applied document
(schema, the API server's rules, images, reserved ids). Pods have no apply, but a patch to one is held to
what the API server allows on a pod update: labels, annotations and finalizers in the metadata, and in the
spec only container images, activeDeadlineSeconds and tolerations.
"""

from __future__ import annotations

import json
from typing import Any

from gamekeeper.api.kube_rules import (
    NESTING_MAX,
    annotation_problems,
    depth_of,
    label_problems,
    qualified_name,
)
from gamekeeper.api.loading import InvalidObject, LoadedObject, json_problems, validate_object
from gamekeeper.core.ordinals import reserve_id_problems
from gamekeeper.runtime.images import ImageMap, UnknownImage
from gamekeeper.store.sqlite import merge_patch

PATCH_EXAMPLE = '\'{"spec":{"opsState":"Allocated"}}\''
# Metadata a user may change with a patch; the rest is the system's (name, uid, resourceVersion, ...).
PATCHABLE_METADATA = ("labels", "annotations", "finalizers")
POD_SPEC_MUTABLE = ("activeDeadlineSeconds", "tolerations")
# A registry host, a path and a tag or digest; longer is not a reference (and would make a very long error).
IMAGE_REFERENCE_MAX = 512


def image_problems(obj: LoadedObject, images: ImageMap) -> list[str]:
    problems: list[str] = []
    if obj.kind != "GameServerSet":
        return problems
    for i, c in enumerate(obj.body["spec"]["gameServerTemplate"]["spec"]["containers"]):
        reference = c.get("image") or ""
        if len(reference) > IMAGE_REFERENCE_MAX:
            problems.append(f"{obj.source}: spec.gameServerTemplate.spec.containers[{i}].image: {len(reference)} "
                            f"characters; an image reference has at most {IMAGE_REFERENCE_MAX}")
            continue
        try:
            images.resolve(reference)
        except UnknownImage as e:
            problems.append(f"{obj.source}: spec.gameServerTemplate.spec.containers[{i}].image: {e}")
    return problems


def semantic_problems(obj: LoadedObject) -> list[str]:
    problems = []
    if obj.kind == "GameServerSet":
        for line in reserve_id_problems(obj.body["spec"].get("reserveGameServerIds")):
            problems.append(f"{obj.source}: spec.reserveGameServerIds{line}")
    return problems


def admit(obj: LoadedObject, images: ImageMap) -> list[str]:
    """What apply checks beyond the document itself, for one validated object."""
    return image_problems(obj, images) + semantic_problems(obj)


def parse_patch(text: str) -> dict[str, Any]:
    """The `--patch` text as a JSON object; InvalidObject with one line otherwise."""
    try:
        body = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidObject([f"--patch: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"]) from None
    except RecursionError:
        raise InvalidObject([f"--patch: nested deeper than {NESTING_MAX} levels"]) from None
    if not isinstance(body, dict):
        raise InvalidObject([f"--patch: expected a JSON object, e.g. {PATCH_EXAMPLE}"])
    if depth_of(body) > NESTING_MAX:
        raise InvalidObject([f"--patch: nested deeper than {NESTING_MAX} levels"])
    problems = json_problems(body)
    if problems:
        raise InvalidObject(problems)
    return body


def _metadata_problems(current: dict[str, Any], body: dict[str, Any]) -> list[str]:
    if "metadata" in body and body["metadata"] is None:
        return ["metadata: cannot be removed; patch its labels or annotations"]
    meta = body.get("metadata")
    if meta is None:
        return []
    if not isinstance(meta, dict):
        return ["metadata: expected a mapping"]
    problems = []
    for key, value in meta.items():
        if key not in PATCHABLE_METADATA and value != current["metadata"].get(key):
            problems.append(f"metadata.{key}: is set by the system and cannot be patched (patchable: "
                            f"{', '.join(PATCHABLE_METADATA)})")
    return problems


def _pod_problems(current: dict[str, Any], merged: dict[str, Any], images: ImageMap | None) -> list[str]:
    meta = merged.get("metadata") or {}
    problems: list[str] = []
    for key in ("labels", "annotations"):
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            problems.append(f"metadata.{key}: expected a mapping of strings")
            continue
        problems += [f"metadata.{key}[{k}]: expected a string, got {type(v).__name__}"
                     for k, v in value.items() if not isinstance(v, str)]
    if problems:
        return problems
    problems += label_problems(meta.get("labels"), "metadata.labels")
    problems += annotation_problems(meta.get("annotations"), "metadata.annotations")
    finalizers = meta.get("finalizers")
    if finalizers is not None and not (isinstance(finalizers, list) and all(isinstance(f, str) for f in finalizers)):
        problems.append("metadata.finalizers: expected a list of strings")
    else:
        problems += [f"metadata.finalizers[{i}]: {p}" for i, f in enumerate(finalizers or [])
                     if (p := qualified_name(f))]
    old_spec, new_spec = current.get("spec") or {}, merged.get("spec")
    if not isinstance(new_spec, dict):
        return [*problems, "spec: expected a mapping"]

    def frozen(spec: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in spec.items() if k not in POD_SPEC_MUTABLE}
        for group in ("containers", "initContainers"):
            if isinstance(spec.get(group), list):
                out[group] = [{k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c
                              for c in spec[group]]
        return out

    if frozen(new_spec) != frozen(old_spec):
        changed = sorted(k for k in set(new_spec) | set(old_spec)
                         if frozen(new_spec).get(k) != frozen(old_spec).get(k))
        problems.append(f"spec.{changed[0]}: a pod's spec cannot change except containers[*].image, "
                        f"{', '.join(POD_SPEC_MUTABLE)} (patch the GameServerSet or GameServer instead)")
        return problems
    for group in ("containers", "initContainers"):
        for i, c in enumerate(new_spec.get(group) or []):
            image = c.get("image")
            if not isinstance(image, str) or not image:
                problems.append(f"spec.{group}[{i}].image: expected a non-empty string")
            elif len(image) > IMAGE_REFERENCE_MAX:
                problems.append(f"spec.{group}[{i}].image: {len(image)} characters; an image reference has at most "
                                f"{IMAGE_REFERENCE_MAX}")
            elif images is not None and image != old_spec[group][i].get("image"):
                try:
                    images.resolve(image)
                except UnknownImage as e:
                    problems.append(f"spec.{group}[{i}].image: {e}")
    return problems


def admit_patch(kind: str, current: dict[str, Any], body: dict[str, Any], images: ImageMap | None) -> dict[str, Any]:
    """The object `body` would make of `current`, checked as apply checks it; InvalidObject when refused."""
    problems: list[str] = []
    if "status" in body:
        problems.append("status: is written by the controllers (on a cluster a patch of the object ignores it); "
                        "patch spec or metadata")
    for key in ("apiVersion", "kind"):
        if key in body and body[key] != current.get(key):
            problems.append(f"{key}: cannot be changed by a patch (it is {current.get(key)!r})")
    problems += _metadata_problems(current, body)
    if problems:
        raise InvalidObject(problems)
    merged: dict[str, Any] = merge_patch(current, body)
    if kind == "Pod":
        problems = _pod_problems(current, merged, images)
    else:
        check = {k: v for k, v in merged.items() if k != "status"}
        check["metadata"] = {k: v for k, v in (merged.get("metadata") or {}).items()
                             if k in ("name", "namespace", "labels", "annotations", "finalizers")}
        try:
            obj = validate_object(check, "patch")
        except InvalidObject as e:
            raise InvalidObject([p.removeprefix("patch: ") for p in e.problems]) from None
        if images is not None:
            problems = [p.removeprefix("patch: ") for p in admit(obj, images)]
        else:
            problems = [p.removeprefix("patch: ") for p in semantic_problems(obj)]
    if problems:
        raise InvalidObject(problems)
    return merged
