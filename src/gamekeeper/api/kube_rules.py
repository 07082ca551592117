"""The Kubernetes API server's own rules for the fields Gamekeeper stores (apimachinery's validation).

Whatever `gk apply` accepts must be what a cluster would accept for the same object, or the same YAML behaves
differently in the two modes. Each check returns a problem text (without the field path) or None, so the
loader, the patch admission and the GameServer controller (rendered template values) share one wording.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from pydantic import Field

INT32_MAX = 2**31 - 1
INT32_MIN = -(2**31)
INT64_MAX = 2**63 - 1

Int32 = Annotated[int, Field(ge=INT32_MIN, le=INT32_MAX)]
NonNegInt32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
NonNegInt64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
IntOrString32 = Int32 | str

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
LABEL_VALUE_MAX = 63
QUALIFIED_NAME_MAX = 63
ANNOTATIONS_TOTAL_MAX = 256 * 1024
# etcd's default request limit; the API server refuses larger objects.
OBJECT_BYTES_MAX = 1536 * 1024
# Deeper than any real object; PyYAML's composer and json recurse, so a hostile file must stop well before.
NESTING_MAX = 64
# Nodes after alias expansion: a billion-laughs file is a few hundred bytes that expand to 10^9 nodes.
EXPANDED_NODES_MAX = 200_000
# Reserved ids are expanded into sets of ordinals; a fleet this size is already far beyond one machine.
RESERVED_IDS_MAX = 100_000

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_PORT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _short(value: str, limit: int = 40) -> str:
    """A value quoted for a message, cut so that a 10 MB value does not make a 10 MB error line."""
    text = value if len(value) <= limit else value[:limit] + "…"
    return repr(text)


def dns1123_label(value: str) -> str | None:
    if len(value) > DNS1123_LABEL_MAX:
        return f"{_short(value)} is {len(value)} characters; at most {DNS1123_LABEL_MAX} (a DNS-1123 label)"
    if not _DNS1123_LABEL.match(value):
        return (f"{_short(value)} is not a DNS-1123 label (lower-case letters, digits and '-', starting and ending "
                "with a letter or digit)")
    return None


def dns1123_subdomain(value: str) -> str | None:
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        return f"{_short(value)} is {len(value)} characters; at most {DNS1123_SUBDOMAIN_MAX} (a DNS-1123 subdomain)"
    if not _DNS1123_SUBDOMAIN.match(value):
        return (f"{_short(value)} is not a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', starting "
                "and ending with a letter or digit)")
    return None


def qualified_name(value: str) -> str | None:
    """A label or annotation key: `[prefix/]name`, prefix a DNS-1123 subdomain, name at most 63 characters."""
    prefix, slash, name = value.rpartition("/")
    if slash and not prefix:
        return f"{_short(value)}: the prefix before '/' must not be empty"
    if slash:
        problem = dns1123_subdomain(prefix)
        if problem:
            return f"{_short(value)}: prefix {problem}"
    if not name:
        return f"{_short(value)}: the name part must not be empty"
    if len(name) > QUALIFIED_NAME_MAX:
        return f"{_short(value)}: the name part is {len(name)} characters; at most {QUALIFIED_NAME_MAX}"
    if not _QUALIFIED_NAME.match(name):
        return (f"{_short(value)} is not a valid key (an optional DNS prefix and '/', then letters, digits, '-', "
                "'_' and '.', starting and ending with a letter or digit)")
    return None


def label_value(value: str) -> str | None:
    if len(value) > LABEL_VALUE_MAX:
        return f"{_short(value)} is {len(value)} characters; a label value has at most {LABEL_VALUE_MAX}"
    if not _LABEL_VALUE.match(value):
        return (f"{_short(value)} is not a valid label value (letters, digits, '-', '_' and '.', starting and "
                "ending with a letter or digit, or empty)")
    return None


def env_name(value: str) -> str | None:
    """Kubernetes' relaxed environment variable names (default since 1.32): printable ASCII, no '='."""
    if not value:
        return "must not be empty"
    if "=" in value:
        return f"{_short(value)} contains '='; an environment variable name cannot"
    if not all(" " <= ch <= "~" for ch in value):
        return f"{_short(value)} must be printable ASCII characters only"
    return None


def port_name(value: str) -> str | None:
    """IANA_SVC_NAME: at most 15 characters, lower-case letters, digits and '-', at least one letter."""
    if len(value) > 15 or not _PORT_NAME.match(value) or "--" in value or not any(c.isalpha() for c in value):
        return (f"{_short(value)} is not a valid port name (at most 15 lower-case letters, digits and '-', with a "
                "letter, no '--')")
    return None


def ops_state_value(value: str) -> str | None:
    """opsState is copied into the pod label `game.kruise.io/gs-opsState`, so it must be a label value too."""
    if not value:
        return "must not be empty"
    problem = label_value(value)
    return f"{problem} (opsState is copied into a pod label)" if problem else None


def priority_value(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return f"{value!r} is not an integer"
    if not INT32_MIN <= value <= INT32_MAX:
        return f"{value} is outside int32 ({INT32_MIN}..{INT32_MAX})"
    return None


def label_problems(labels: Mapping[str, Any] | None, path: str, templated: bool = False) -> list[str]:
    """Each bad key or value of a labels map; `templated` skips values still to be rendered (`{{...}}`)."""
    out: list[str] = []
    for key, value in (labels or {}).items():
        problem = qualified_name(key) if isinstance(key, str) else "keys must be strings"
        if problem:
            out.append(f"{path}: key {problem}")
        if isinstance(value, str) and not (templated and "{{" in value):
            problem = label_value(value)
            if problem:
                out.append(f"{path}[{key}]: {problem}")
    return out


def annotation_problems(annotations: Mapping[str, Any] | None, path: str) -> list[str]:
    out: list[str] = []
    total = 0
    for key, value in (annotations or {}).items():
        problem = qualified_name(key) if isinstance(key, str) else "keys must be strings"
        if problem:
            out.append(f"{path}: key {problem}")
        total += len(str(key).encode()) + (len(value.encode()) if isinstance(value, str) else 0)
    if total > ANNOTATIONS_TOTAL_MAX:
        out.append(f"{path}: {total} bytes in total; Kubernetes allows at most {ANNOTATIONS_TOTAL_MAX}")
    return out


def relative_dir_escapes(path: str) -> bool:
    """True when a workingDir, taken inside the container's directory, would climb out of it ('..')."""
    depth = 0
    for part in path.split("/"):
        if part in ("", "."):
            continue
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            return True
    return False


def join_key(path: str, key: object) -> str:
    """A field path one key deeper: `spec.replicas`, but `labels[game.kruise.io/x]` for keys a dot cannot show."""
    text = str(key)
    if text == "":
        return f'{path}[""]'
    if any(ch in text for ch in "./ []"):
        return f"{path}[{text}]"
    return f"{path}.{text}" if path else text


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(field path, value) of every node, iteratively (a hostile document may be deep)."""
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        yield where, node
        if isinstance(node, dict):
            for key, child in node.items():
                stack.append((join_key(where, key), child))
        elif isinstance(node, list):
            for i, child in enumerate(node):
                stack.append((f"{where}[{i}]", child))


def depth_of(value: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > NESTING_MAX:
            return depth
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def nul_problems(doc: Any) -> list[str]:
    """NUL bytes cannot reach a process (argv and environ are C strings) and no API server takes them."""
    out: list[str] = []
    for where, node in walk(doc):
        if isinstance(node, str) and "\x00" in node:
            out.append(f"{where or 'document'}: contains a NUL byte (\\0); remove it")
        elif isinstance(node, dict) and any(isinstance(k, str) and "\x00" in k for k in node):
            out.append(f"{where or 'document'}: a key contains a NUL byte (\\0); remove it")
        if len(out) >= 5:
            break
    return out


def pod_spec_problems(spec: Mapping[str, Any], path: str) -> list[str]:
    """Container names unique DNS labels, env names, port names, workingDir inside the container directory."""
    out: list[str] = []
    seen: dict[str, str] = {}
    for group in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(group) or []):
            where = f"{path}.{group}[{i}]"
            name = container.get("name")
            if isinstance(name, str):
                problem = dns1123_label(name)
                if problem:
                    out.append(f"{where}.name: {problem}")
                elif name in seen:
                    out.append(f"{where}.name: {name!r} is already the name of {seen[name]} (names must be unique)")
                seen.setdefault(name, where)
            for j, env in enumerate(container.get("env") or []):
                problem = env_name(env.get("name") or "")
                if problem:
                    out.append(f"{where}.env[{j}].name: {problem}")
            for j, port in enumerate(container.get("ports") or []):
                if port.get("name") is not None:
                    problem = port_name(port["name"])
                    if problem:
                        out.append(f"{where}.ports[{j}].name: {problem}")
            working_dir = container.get("workingDir")
            if isinstance(working_dir, str) and relative_dir_escapes(working_dir):
                out.append(f"{where}.workingDir: {_short(working_dir)} climbs out of the container's directory "
                           "with '..'; use a path inside it")
    return out


def _meta_problems(meta: Mapping[str, Any] | None, path: str) -> list[str]:
    meta = meta or {}
    return label_problems(meta.get("labels"), f"{path}.labels") + annotation_problems(
        meta.get("annotations"), f"{path}.annotations"
    )


def object_problems(kind: str, body: Mapping[str, Any]) -> list[str]:
    """The API server's rules for a validated GameServerSet or GameServer body (its typed dump)."""
    meta = body.get("metadata") or {}
    out = _meta_problems(meta, "metadata")
    for i, finalizer in enumerate(meta.get("finalizers") or []):
        problem = qualified_name(finalizer)
        if problem:
            out.append(f"metadata.finalizers[{i}]: {problem}")
    name = meta.get("name")
    if kind == "GameServer" and isinstance(name, str) and len(name) > DNS1123_LABEL_MAX:
        out.append(f"metadata.name: at most {DNS1123_LABEL_MAX} characters (it is also the pod's host name)")
    spec = body.get("spec") or {}
    if kind == "GameServerSet":
        template = spec.get("gameServerTemplate") or {}
        out += _meta_problems(template.get("metadata"), "spec.gameServerTemplate.metadata")
        out += pod_spec_problems(template.get("spec") or {}, "spec.gameServerTemplate.spec")
        service_name = spec.get("serviceName")
        if service_name:
            problem = dns1123_label(service_name)
            if problem:
                out.append(f"spec.serviceName: {problem}")
        for i, sq in enumerate(spec.get("serviceQualities") or []):
            if len(sq.get("name") or "") > QUALIFIED_NAME_MAX:
                out.append(f"spec.serviceQualities[{i}].name: at most {QUALIFIED_NAME_MAX} characters (it names the "
                           "pod condition game.kruise.io/<name>)")
            for j, action in enumerate(sq.get("serviceQualityAction") or []):
                where = f"spec.serviceQualities[{i}].serviceQualityAction[{j}]"
                out += label_problems(action.get("labels"), f"{where}.labels", templated=True)
                out += annotation_problems(action.get("annotations"), f"{where}.annotations")
                ops = action.get("opsState")
                if isinstance(ops, str) and ops and "{{" not in ops:
                    problem = ops_state_value(ops)
                    if problem:
                        out.append(f"{where}.opsState: {problem}")
    elif kind == "GameServer":
        ops = spec.get("opsState")
        if isinstance(ops, str) and ops:
            problem = ops_state_value(ops)
            if problem:
                out.append(f"spec.opsState: {problem}")
    return out
