"""CustomResourceDefinitions for GameServerSet, GameServer and our Workload, derived from the api/ models.

The schemas come from the same pydantic models that `gk apply` validates with, so the cluster and the
embedded mode accept the same YAML. Pydantic's JSON Schema is not a structural schema, so it is rewritten:
`$ref`s inlined, `Optional[X]` (anyOf X|null) turned into X with `nullable: true`, int|str into
`x-kubernetes-int-or-string`, open structures (`Open`, `dict[str, Any]`) into
`x-kubernetes-preserve-unknown-fields`, and titles, null defaults and `additionalProperties: false` dropped
(a structural schema prunes unknown fields instead). `structural_problems` checks the result against the
rules the API server enforces, so a test fails before a cluster would refuse the CRD.

Under `spec.gameServerTemplate` every object also keeps unknown fields, as upstream's CRD does (its template
is schemaless): the API server would otherwise silently drop pod fields newer than our models. Known fields
are still validated.
"""

from __future__ import annotations

import copy
from typing import Any

from gamekeeper.api.models import GROUP, VERSION, GameServerSetSpec, GameServerSpec
from gamekeeper.kube.resources import WORKLOAD_GROUP, WORKLOAD_VERSION

Schema = dict[str, Any]

PRESERVE = "x-kubernetes-preserve-unknown-fields"
INT_OR_STRING = "x-kubernetes-int-or-string"
_DROP = {"title", "description", "examples"}
_TYPES = {"object", "array", "string", "integer", "number", "boolean"}


class SchemaConversionError(ValueError):
    pass


def _convert(node: Schema, defs: dict[str, Schema], path: str) -> Schema:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name not in defs:
            raise SchemaConversionError(f"{path}: unknown reference {node['$ref']}")
        merged = {**defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, defs, path)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        nullable = len(options) < len(node["anyOf"])
        types = sorted(o.get("type", "") for o in options)
        # An int32-or-string's bounds cannot be stated structurally; gk apply checks them (api/kube_rules.py).
        if types == ["integer", "string"] and all(set(o) <= {"type", "minimum", "maximum"} for o in options):
            out: Schema = {INT_OR_STRING: True}
        elif len(options) == 1:
            out = _convert(options[0], defs, path)
        else:
            raise SchemaConversionError(f"{path}: cannot express anyOf {node['anyOf']} structurally")
        if nullable:
            out["nullable"] = True
        return out
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}
    out = {}
    for key, value in node.items():
        if key in _DROP or (key == "default" and value is None):
            continue
        if key == "properties":
            out["properties"] = {k: _convert(v, defs, f"{path}.{k}") for k, v in value.items()}
        elif key == "items":
            out["items"] = _convert(value, defs, f"{path}[]")
        elif key == "additionalProperties":
            if value is True or value == {}:
                out[PRESERVE] = True
            elif isinstance(value, dict):
                out["additionalProperties"] = _convert(value, defs, f"{path}.*")
            # `false` (extra="forbid"): a structural schema prunes unknown fields; nothing to say.
        elif key == "default":
            out["default"] = copy.deepcopy(value)
        else:
            out[key] = copy.deepcopy(value)
    if out.get(PRESERVE) and not out.get("properties"):
        out.pop("properties", None)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _preserve_objects(node: Schema) -> None:
    """Keep unknown fields in every object below `node` (see the module docstring)."""
    if node.get("type") == "object" and "additionalProperties" not in node:
        node[PRESERVE] = True
    for child in (node.get("properties") or {}).values():
        _preserve_objects(child)
    if isinstance(node.get("items"), dict):
        _preserve_objects(node["items"])


def model_schema(model: type[Any]) -> Schema:
    raw = model.model_json_schema(by_alias=True)
    defs = raw.pop("$defs", {})
    return _convert(raw, defs, "spec")


def gameserverset_spec_schema() -> Schema:
    schema = model_schema(GameServerSetSpec)
    _preserve_objects(schema["properties"]["gameServerTemplate"])
    return schema


def _root(spec: Schema, status: Schema, spec_required: bool) -> Schema:
    return {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        **({"required": ["spec"]} if spec_required else {}),
    }


def _integers(*names: str) -> dict[str, Schema]:
    return {n: {"type": "integer", "format": "int32"} for n in names}


def _column(name: str, type_: str, path: str, description: str = "") -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if description:
        column["description"] = description
    return column


def _crd(group: str, kind: str, plural: str, short: list[str], version: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": {"app.kubernetes.io/part-of": "gamekeeper"}},
        "spec": {
            "group": group,
            "names": {
                "kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower(),
                **({"shortNames": short} if short else {}),
            },
            "scope": "Namespaced",
            "versions": [version],
        },
    }


def gameserverset_crd() -> dict[str, Any]:
    status = {
        "type": "object",
        PRESERVE: True,
        "properties": {
            **_integers(
                "replicas", "currentReplicas", "readyReplicas", "availableReplicas", "updatedReplicas",
                "updatedReadyReplicas", "maintainingReplicas", "waitToBeDeletedReplicas", "preDeleteReplicas",
            ),
            "observedGeneration": {"type": "integer", "format": "int64"},
            "labelSelector": {"type": "string"},
        },
    }
    version = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": _root(gameserverset_spec_schema(), status, spec_required=True)},
        "subresources": {
            "status": {},
            "scale": {
                "specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.labelSelector",
            },
        },
        # Upstream's columns, in its order (kubectl upper-cases the headers).
        "additionalPrinterColumns": [
            _column("DESIRED", "integer", ".spec.replicas", "The desired number of GameServers."),
            _column("CURRENT", "integer", ".status.currentReplicas", "The number of currently all GameServers."),
            _column("UPDATED", "integer", ".status.updatedReplicas", "The number of GameServers updated."),
            _column("READY", "integer", ".status.readyReplicas", "The number of GameServers ready."),
            _column("Maintaining", "integer", ".status.maintainingReplicas",
                    "The number of GameServers Maintaining."),
            _column("WaitToBeDeleted", "integer", ".status.waitToBeDeletedReplicas",
                    "The number of GameServers WaitToBeDeleted."),
            _column("PreDelete", "integer", ".status.preDeleteReplicas", "The number of GameServers PreDelete."),
            _column("AGE", "date", ".metadata.creationTimestamp"),
        ],
    }
    return _crd(GROUP, "GameServerSet", "gameserversets", ["gss"], version)


def gameserver_crd() -> dict[str, Any]:
    status = {
        "type": "object",
        PRESERVE: True,
        "properties": {
            "currentState": {"type": "string"},
            "desiredState": {"type": "string"},
            "deletionPriority": {INT_OR_STRING: True},
            "updatePriority": {INT_OR_STRING: True},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
        },
    }
    version = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": _root(model_schema(GameServerSpec), status, spec_required=False)},
        "subresources": {"status": {}},
        "additionalPrinterColumns": [
            _column("STATE", "string", ".status.currentState", "The current state of GameServer"),
            _column("OPSSTATE", "string", ".spec.opsState", "The operations state of GameServer"),
            _column("DP", "string", ".status.deletionPriority", "The current deletionPriority of GameServer"),
            _column("UP", "string", ".status.updatePriority", "The current updatePriority of GameServer"),
            _column("AGE", "date", ".metadata.creationTimestamp"),
        ],
    }
    return _crd(GROUP, "GameServer", "gameservers", ["gs"], version)


def workload_crd() -> dict[str, Any]:
    """Our stand-in for upstream's Advanced StatefulSet: written only by the operator."""
    spec = {
        "type": "object",
        # The controllers own this object's shape (control/workload.py): keep what they write, even fields
        # this schema does not name, rather than let the API server prune them.
        PRESERVE: True,
        "required": ["replicas", "template"],
        "properties": {
            "replicas": {"type": "integer", "format": "int32", "minimum": 0},
            "reserveOrdinals": {"type": "array", "nullable": True, "items": {INT_OR_STRING: True}},
            "template": {"type": "object", PRESERVE: True},
            "updateStrategy": {"type": "object", "nullable": True, PRESERVE: True},
            "templateHash": {"type": "string"},
            "serviceName": {"type": "string"},
        },
    }
    status = {
        "type": "object",
        PRESERVE: True,
        "properties": _integers(
            "replicas", "readyReplicas", "availableReplicas", "updatedReplicas", "updatedReadyReplicas",
        ),
    }
    version = {
        "name": WORKLOAD_VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": _root(spec, status, spec_required=True)},
        "subresources": {"status": {}},
        "additionalPrinterColumns": [
            _column("DESIRED", "integer", ".spec.replicas"),
            _column("CURRENT", "integer", ".status.replicas"),
            _column("UPDATED", "integer", ".status.updatedReplicas"),
            _column("READY", "integer", ".status.readyReplicas"),
            _column("AGE", "date", ".metadata.creationTimestamp"),
        ],
    }
    crd = _crd(WORKLOAD_GROUP, "Workload", "workloads", ["gkwl"], version)
    crd["spec"]["names"]["categories"] = ["gamekeeper"]
    return crd


def all_crds() -> list[dict[str, Any]]:
    return [gameserverset_crd(), gameserver_crd(), workload_crd()]


# -- the structural-schema rules ----------------------------------------------------------------------------

_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")


def structural_problems(schema: Schema, path: str = "") -> list[str]:
    """Violations of the API server's structural-schema rules (an empty list: structural).

    Every node has a type unless it is int-or-string or keeps unknown fields; no `$ref`; properties and
    additionalProperties are exclusive; no logical junctors (we emit none); `metadata` at the root may only
    restrict name and generateName; int-or-string nodes carry no type; types are OpenAPI's.
    """
    problems: list[str] = []
    where = path or "<root>"
    for key in ("$ref", "$defs", "definitions"):
        if key in schema:
            problems.append(f"{where}: {key} is not allowed")
    for key in _JUNCTORS:
        if key in schema:
            problems.append(f"{where}: {key} is not supported here")
    int_or_string = schema.get(INT_OR_STRING) is True
    preserve = schema.get(PRESERVE) is True
    type_ = schema.get("type")
    if int_or_string and type_ is not None:
        problems.append(f"{where}: x-kubernetes-int-or-string must not set a type")
    if type_ is None and not (int_or_string or preserve):
        problems.append(f"{where}: type is required")
    if type_ is not None and type_ not in _TYPES:
        problems.append(f"{where}: unknown type {type_!r}")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{where}: properties and additionalProperties are mutually exclusive")
    if schema.get("additionalProperties") is False:
        problems.append(f"{where}: additionalProperties: false is not allowed")
    if type_ == "array" and not isinstance(schema.get("items"), dict):
        problems.append(f"{where}: an array needs items")
    for name in schema.get("required") or []:
        if name not in (schema.get("properties") or {}):
            problems.append(f"{where}: required field {name!r} is not among the properties")
    for name, child in (schema.get("properties") or {}).items():
        child_path = f"{path}.{name}" if path else name
        if not path and name == "metadata":
            extra = set(child) - {"type", "properties"} or set(child.get("properties") or {}) - {
                "name", "generateName"}
            if extra or child.get("type") != "object":
                problems.append("metadata: only restrictions on name and generateName are allowed")
            continue
        problems.extend(structural_problems(child, child_path))
    if isinstance(schema.get("items"), dict):
        problems.extend(structural_problems(schema["items"], f"{where}[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        problems.extend(structural_problems(schema["additionalProperties"], f"{where}.*"))
    return problems
