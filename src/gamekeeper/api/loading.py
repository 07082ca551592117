"""YAML in, validated objects out, with one clear line per problem.

Each problem names the field path as a user writes it (`spec.serviceQualities[0].permanent`) and what was
expected. Nothing is stored unless every document of every file is valid, so callers validate first and
write afterwards.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml
from pydantic import ValidationError

from gamekeeper.api.kube_rules import (
    EXPANDED_NODES_MAX,
    INT32_MAX,
    INT32_MIN,
    NESTING_MAX,
    OBJECT_BYTES_MAX,
    depth_of,
    dns1123_label,
    join_key,
    nul_problems,
    object_problems,
    walk,
)
from gamekeeper.api.models import KIND_MODELS, KNOWN_OPS_STATES, REAPPLY_QUALITIES_KEY, Model
from gamekeeper.api.scaledobject import ScaledObject, scaled_object_problems

MODELS: dict[str, type[Model]] = {**KIND_MODELS, "ScaledObject": ScaledObject}


class InvalidObject(ValueError):
    """A document failed validation; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class LoadedObject:
    kind: str
    namespace: str
    name: str
    body: dict[str, Any]
    source: str
    warnings: list[str] = field(default_factory=list)


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false are booleans, so `yes`, `on` stay strings.

    Kubernetes users quote these by habit; a bare `yes` reaching a boolean field should be an error that says
    so, not a silent True.
    """


_Yaml12Loader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:timestamp")]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}
# Dates stay strings, as in YAML 1.2 and in JSON: an unquoted `2024-01-01` is not a Python date downstream.
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def _no_duplicate_keys(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        mark = key_node.start_mark
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, f"a mapping key is a {key_node.id} (line {mark.line + 1}); keys must be plain strings",
                mark,
            )
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (line {mark.line + 1})", mark
            )
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


_Yaml12Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)


def _int_with_mark(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    # Python refuses to read integers of more than 4300 digits with a bare ValueError; say where it is.
    try:
        return int(loader.construct_yaml_int(node))
    except ValueError:
        mark = node.start_mark
        raise yaml.constructor.ConstructorError(
            None, None, f"an integer of {len(node.value)} characters (line {mark.line + 1}); Kubernetes integers "
            "are at most 64 bits", mark,
        ) from None


_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _int_with_mark)


def decode_yaml_bytes(data: bytes, source: str) -> str:
    """A file's bytes as text: UTF-8, or UTF-16/32 with a byte-order mark (the encodings YAML allows)."""
    for bom, codec in ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"),
                       (b"\xef\xbb\xbf", "utf-8-sig"), (b"\xfe\xff", "utf-16"), (b"\xff\xfe", "utf-16")):
        if data.startswith(bom):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as err:
                raise InvalidObject([f"{source}: not valid {codec.upper()} at byte {err.start}; save the file "
                                     "as UTF-8"]) from None
    if b"\x00" in data[:4]:
        raise InvalidObject([f"{source}: looks like UTF-16 or UTF-32 without a byte-order mark; save the file as "
                             "UTF-8"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InvalidObject([f"{source}: not UTF-8 at line {line} (byte {err.start}: {data[err.start]:#04x}); "
                             "save the file as UTF-8"]) from None


def _structure_problem(roots: list[yaml.Node]) -> str | None:
    """Nesting deeper than NESTING_MAX, recursive aliases, or aliases that expand past EXPANDED_NODES_MAX.

    Checked on the composed node graph, before anything is constructed: a billion-laughs file constructs
    shared lists cheaply, but every later walk (validation, JSON) expands them.
    """
    for number, root in enumerate(roots, 1):
        sizes: dict[int, tuple[int, int]] = {}  # id -> (expanded nodes, depth)
        on_path: set[int] = set()
        stack: list[tuple[yaml.Node, bool]] = [(root, False)]
        while stack:
            node, done = stack.pop()
            children: list[yaml.Node] = []
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            if done:
                on_path.discard(id(node))
                size = 1 + sum(sizes[id(c)][0] for c in children)
                depth = 1 + max((sizes[id(c)][1] for c in children), default=0)
                sizes[id(node)] = (size, depth)
                if depth > NESTING_MAX:
                    return f"nested deeper than {NESTING_MAX} levels at line {node.start_mark.line + 1}"
                if size > EXPANDED_NODES_MAX:
                    return (f"document {number}: aliases expand to more than {EXPANDED_NODES_MAX} values (an alias "
                            "bomb?); write the values out")
                continue
            if id(node) in sizes:
                continue
            on_path.add(id(node))
            stack.append((node, True))
            for child in children:
                if id(child) in on_path:
                    return (f"document {number}: an alias refers to its own anchor (line "
                            f"{child.start_mark.line + 1})")
                if id(child) not in sizes:
                    stack.append((child, False))
    return None


def _too_deep_line(text: str) -> int | str:
    """Where the nesting passes NESTING_MAX, from the event stream (the parser keeps a stack, it does not recurse)."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Yaml12Loader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > NESTING_MAX:
                    return event.start_mark.line + 1 if event.start_mark else "?"
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        pass
    return "?"


def parse_yaml_documents(text: str, source: str) -> list[Any]:
    """All non-empty documents of a YAML stream; a syntax error names the line and column."""
    loader = _Yaml12Loader(text)
    try:
        roots: list[yaml.Node] = []
        while loader.check_node():
            root = loader.get_node()
            if root is not None:
                roots.append(root)
        problem = _structure_problem(roots)
        if problem:
            raise InvalidObject([f"{source}: {problem}"])
        docs = [loader.construct_document(root) for root in roots]
    except InvalidObject:
        raise
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        raise InvalidObject([f"{source}: invalid YAML at {where}: {err.problem or err.context}"]) from None
    except yaml.YAMLError as err:
        raise InvalidObject([f"{source}: invalid YAML: {err}"]) from None
    except RecursionError:
        # PyYAML's composer recurses once or twice per level; far past NESTING_MAX, the stack runs out first.
        raise InvalidObject([f"{source}: nested deeper than {NESTING_MAX} levels at line {_too_deep_line(text)}"]) \
            from None
    except ValueError as err:
        # PyYAML's constructors raise plain ValueError for what they cannot read; say so in one line.
        raise InvalidObject([f"{source}: invalid value: {str(err)[:120]}"]) from None
    finally:
        loader.dispose()
    return [d for d in docs if d is not None]


def json_problems(doc: Any) -> list[str]:
    """What JSON (and so the API server) cannot hold: non-string keys, binary, sets, NaN and infinities."""
    out: list[str] = []
    if depth_of(doc) > NESTING_MAX:
        return [f"nested deeper than {NESTING_MAX} levels"]
    for where, node in walk(doc):
        place = where or "document"
        if isinstance(node, dict):
            bad = [k for k in node if not isinstance(k, str)]
            if bad:
                out.append(f"{place}: key {_show(bad[0])} is not a string; quote it")
        elif isinstance(node, float) and (node != node or node in (float("inf"), float("-inf"))):
            out.append(f"{place}: {node} is not a JSON number")
        elif not isinstance(node, (str, int, float, bool, list, type(None))):
            out.append(f"{place}: a {type(node).__name__} value (e.g. !!binary, !!set) is not JSON; write a "
                       "string, number, list or mapping")
        if len(out) >= 5:
            break
    return out + nul_problems(doc)


def _path(loc: Iterable[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = join_key(out, part)
    return out


def _show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value) if len(value) <= 60 else json.dumps(value[:60]) + f"… ({len(value)} characters)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int) and abs(value) > 10**18:
        return f"an integer of {value.bit_length()} bits"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


_UNION_MEMBERS = {"int", "str", "bool", "float", "list", "dict"}
_TYPE_WORDS = {
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "string_type": "a string",
    "dict_type": "a mapping",
    "list_type": "a list",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _friendly(err: Any) -> tuple[str, str]:
    loc = [p for p in err["loc"]
           if not (isinstance(p, str) and (p in _UNION_MEMBERS or "[" in p or p.startswith("constrained-")))]
    # pydantic reports a union's members as separate errors ('int', 'str'); they are merged by the caller.
    kind = err["type"]
    value = err.get("input")
    if kind == "missing":
        return _path(loc), "required field is missing"
    if kind == "extra_forbidden":
        return _path(loc), "unknown field (check the spelling and indentation; see docs/objects.md)"
    if kind in _TYPE_WORDS:
        return _path(loc), f"expected {_TYPE_WORDS[kind]}, got {_show(value)}"
    if kind == "literal_error":
        return _path(loc), f"expected one of {err['ctx']['expected']}, got {_show(value)}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        op = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(err["ctx"].values()))
        int32 = " (a Kubernetes int32)" if bound in (INT32_MAX, INT32_MIN) else ""
        return _path(loc), f"must be {op} {bound}{int32}, got {_show(value)}"
    if kind == "too_short":
        return _path(loc), f"must have at least {err['ctx'].get('min_length', 1)} item(s)"
    if kind == "string_too_short":
        return _path(loc), "must not be empty"
    if kind == "string_pattern_mismatch":
        return _path(loc), f"{_show(value)} is not a valid name (letters, digits, '-', '_', '.')"
    if kind == "value_error":
        msg = str(err["msg"]).removeprefix("Value error, ")
        return _path(loc), msg
    return _path(loc), str(err["msg"])


def format_validation_error(prefix: str, error: ValidationError) -> list[str]:
    """One line per problem; a union's per-member errors collapse into one line."""
    merged: dict[str, list[str]] = {}
    for err in error.errors(include_url=False):
        where, what = _friendly(err)
        merged.setdefault(where, [])
        if what not in merged[where]:
            merged[where].append(what)
    lines = []
    for where, whats in merged.items():
        expected = [w for w in whats if w.startswith("expected ")]
        if expected and any(w.startswith("must be ") for w in whats):
            # An int-or-string given an out-of-range integer: the range is the news, not "expected a string".
            whats, expected = [w for w in whats if not w.startswith("expected ")], []
        if len(expected) > 1:
            got = expected[0].rsplit(", got ", 1)[-1]
            kinds = " or ".join(w.removeprefix("expected ").rsplit(", got ", 1)[0] for w in expected)
            whats = [f"expected {kinds}, got {got}"] + [w for w in whats if not w.startswith("expected ")]
        for what in whats:
            # Messages may quote what the user wrote; a 10 MB value must not make a 10 MB line.
            what = what if len(what) <= 300 else what[:300] + "…"
            lines.append(f"{prefix}{where}: {what}" if where else f"{prefix}{what}")
    return lines


_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_object(doc: Any, source: str = "") -> LoadedObject:
    """Validate one document; raise InvalidObject with every problem found."""
    prefix = f"{source}: " if source else ""
    if not isinstance(doc, dict):
        raise InvalidObject([f"{prefix}expected a mapping with apiVersion, kind, metadata, spec; got {_show(doc)}"])
    shape = json_problems(doc)
    if shape:
        raise InvalidObject([prefix + p for p in shape])
    kind = doc.get("kind")
    model = MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise InvalidObject(
            [f"{prefix}kind: expected one of {', '.join(MODELS)}, got {_show(kind)}"]
        )
    problems: list[str] = []
    parsed: Model | None = None
    try:
        parsed = model.model_validate(doc)
    except ValidationError as err:
        problems.extend(format_validation_error(prefix, err))
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = meta.get("name") if isinstance(meta, dict) else None
    namespace = (meta.get("namespace") if isinstance(meta, dict) else None) or "default"
    if isinstance(name, str) and not _NAME_RE.match(name) and not problems:
        problems.append(
            f"{prefix}metadata.name: {_show(name)} is not a valid name (lower-case letters, digits and '-', "
            "starting and ending with a letter or digit)"
        )
    elif name is None or name == "":
        problems.append(f"{prefix}metadata.name: required field is missing")
    if isinstance(name, str) and kind == "GameServerSet" and len(name) > 52:
        problems.append(f"{prefix}metadata.name: at most 52 characters (pod names add '-<ordinal>')")
    if isinstance(namespace, str) and dns1123_label(namespace):
        problems.append(f"{prefix}metadata.namespace: {dns1123_label(namespace)} (a namespace name)")
    if problems or parsed is None:
        raise InvalidObject(problems)
    body = parsed.dump()
    body.setdefault("metadata", {})["namespace"] = namespace
    size = len(json.dumps(body))
    refused = object_problems(str(kind), body) + semantic_problems(str(kind), body)
    if size > OBJECT_BYTES_MAX:
        where, biggest = max(((w, len(json.dumps(v))) for w, v in walk(body) if isinstance(v, str)),
                             key=lambda item: item[1], default=("?", 0))
        refused.append(f"{where}: the object is {size} bytes as JSON (this field {biggest}); the API server stores "
                       f"at most {OBJECT_BYTES_MAX}")
    if refused:
        raise InvalidObject([prefix + p for p in refused])
    return LoadedObject(
        kind=str(kind), namespace=namespace, name=str(name), body=body, source=source,
        warnings=[prefix + w for w in semantic_warnings(str(kind), body)],
    )


def semantic_warnings(kind: str, body: dict[str, Any]) -> list[str]:
    """Things that are valid but probably not meant (reported, not refused)."""
    out: list[str] = []
    if kind != "GameServerSet":
        return out
    for i, sq in enumerate(body["spec"].get("serviceQualities") or []):
        if not any(sq.get(h) for h in ("exec", "httpGet", "tcpSocket", "grpc")):
            out.append(f"spec.serviceQualities[{i}]: no probe (exec, httpGet, tcpSocket); it will never act")
        if sq.get("grpc"):
            out.append(f"spec.serviceQualities[{i}].grpc: gRPC probes are not run (kruise-daemon does not run them "
                       "either); use exec, httpGet or tcpSocket")
        for j, action in enumerate(sq.get("serviceQualityAction") or []):
            ops = action.get("opsState")
            if isinstance(ops, str) and ops and "{{" not in ops and ops not in KNOWN_OPS_STATES:
                out.append(
                    f"spec.serviceQualities[{i}].serviceQualityAction[{j}].opsState: {_show(ops)} is a custom "
                    f"opsState (known: {', '.join(KNOWN_OPS_STATES)}); it ranks like None on scale-in"
                )
    out.extend(quality_conflicts(body))
    out.extend(network_checks(body["spec"])[1])
    return out


_WRITTEN_FIELDS = (("opsState", "spec.opsState"), ("deletionPriority", "spec.deletionPriority"),
                   ("updatePriority", "spec.updatePriority"), ("networkDisabled", "spec.networkDisabled"),
                   ("containers", "spec.containers"))


def quality_conflicts(body: dict[str, Any]) -> list[str]:
    """Qualities of one set whose actions write the same GameServer field: valid upstream, but order-dependent.

    Actions are edge-triggered, so the quality whose result changed last wins, and a short stall seen by one
    quality and not the other can leave its value behind. Reported with both field paths and the rule.
    """
    writers: dict[str, dict[int, str]] = {}
    for i, sq in enumerate(body["spec"].get("serviceQualities") or []):
        for j, action in enumerate(sq.get("serviceQualityAction") or []):
            where = f"spec.serviceQualities[{i}].serviceQualityAction[{j}]"
            for key, target in _WRITTEN_FIELDS:
                if action.get(key) is not None:
                    writers.setdefault(target, {}).setdefault(i, f"{where}.{key}")
            for group in ("labels", "annotations"):
                for name in action.get(group) or {}:
                    writers.setdefault(f"metadata.{group}[{name}]", {}).setdefault(i, f"{where}.{group}[{name}]")
    names = [sq.get("name") for sq in body["spec"].get("serviceQualities") or []]
    reapply = (body["metadata"].get("annotations") or {}).get(REAPPLY_QUALITIES_KEY) == "true"
    out: list[str] = []
    for target, by_quality in writers.items():
        if len(by_quality) < 2:
            continue
        order = sorted(by_quality)
        who = " and ".join(repr(names[i]) for i in order)
        paths = ", ".join(by_quality[i] for i in order)
        if reapply:
            rule = (f"with {REAPPLY_QUALITIES_KEY}: \"true\" every sync re-applies the actions matching each "
                    f"quality's current result in list order, so {names[order[-1]]!r} wins while its action matches")
        else:
            rule = ("actions run only when a quality's result changes, so the quality whose result changed last "
                    "wins and a value can outlive its cause (e.g. Maintaining after both recover); to decide on the "
                    f"current results of all of them, annotate the set {REAPPLY_QUALITIES_KEY}: \"true\" (see "
                    "docs/semantics.md, Conflicting qualities)")
        out.append(f"{paths}: qualities {who} both write the GameServer's {target}; {rule}")
    return out


def semantic_problems(kind: str, body: dict[str, Any]) -> list[str]:
    """Valid by the schema, but refused: it could not work here (the object is not applied)."""
    if kind == "ScaledObject":
        return scaled_object_problems(body)
    if kind != "GameServerSet":
        return []
    return network_checks(body["spec"])[0]


# --- spec.network ------------------------------------------------------------------------------------------

# What embedded mode can run; a cluster runs whichever OpenKruiseGame plugins it has installed.
EMBEDDED_NETWORK_TYPES = ("Kubernetes-HostPort",)
HOST_PORT_PARAMETERS = ("ContainerPorts",)
NETWORK_PROTOCOLS = ("TCP", "UDP", "TCPUDP")
SAME_AS_HOST = "SameAsHost"


def parse_container_ports(value: str) -> tuple[str, list[tuple[int | None, str]]]:
    """Kubernetes-HostPort's `ContainerPorts` value: `containerName:port1/protocol1,port2/protocol2,...`.

    As upstream: the protocol is TCP when left out, `TCPUDP` is TCP and UDP on one host port, and the port may be
    `SameAsHost` (returned as None: the container port is the host port allocated). Unlike upstream, which skips
    what it cannot read, a malformed value raises ValueError saying what is wrong.
    """
    name, sep, ports = value.partition(":")
    if not sep or not name or not ports or ":" in ports:
        raise ValueError(f"{_show(value)}: expected containerName:port/protocol,... (e.g. game:7777/UDP)")
    out: list[tuple[int | None, str]] = []
    for item in ports.split(","):
        port_text, slash, protocol = item.partition("/")
        if not slash:
            protocol = "TCP"
        port: int | None
        if port_text == SAME_AS_HOST:
            port = None
        elif port_text.isdigit() and 1 <= int(port_text) <= 65535:
            port = int(port_text)
        else:
            raise ValueError(f"{_show(value)}: port {_show(port_text)} is not a number from 1 to 65535 or "
                             f"{SAME_AS_HOST}")
        if protocol not in NETWORK_PROTOCOLS:
            hint = ""
            if protocol.upper() in NETWORK_PROTOCOLS:
                hint = f" (protocol names are upper-case: {protocol.upper()})"
            elif protocol.upper() == "SCTP":
                hint = " (SCTP is not forwarded in embedded mode)"
            raise ValueError(f"{_show(value)}: protocol {_show(protocol)} is not one of "
                             f"{', '.join(NETWORK_PROTOCOLS)}{hint}")
        out.append((port, protocol))
    return name, out


def network_checks(spec: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(problems, warnings) of a GameServerSet's `spec.network` for embedded mode."""
    network = spec.get("network")
    if not isinstance(network, dict):
        return [], []
    problems: list[str] = []
    warnings: list[str] = []
    supported = ", ".join(EMBEDDED_NETWORK_TYPES)
    network_type = network.get("networkType")
    if not network_type:
        problems.append(f"spec.network.networkType: required when spec.network is set (supported in embedded "
                        f"mode: {supported})")
        return problems, warnings
    if network_type not in EMBEDDED_NETWORK_TYPES:
        close = [t for t in EMBEDDED_NETWORK_TYPES if t.lower() == str(network_type).lower()]
        hint = f"; did you mean {_show(close[0])}? (networkType is case-sensitive)" if close else (
            "; other types need their cloud provider's OpenKruiseGame plugin in a Kubernetes cluster")
        problems.append(f"spec.network.networkType: {_show(network_type)} is not supported in embedded mode "
                        f"(supported: {supported}){hint}")
        return problems, warnings
    containers = [c.get("name") for c in spec["gameServerTemplate"]["spec"]["containers"]]
    seen: dict[str, int] = {}
    for i, param in enumerate(network.get("networkConf") or []):
        where = f"spec.network.networkConf[{i}]"
        if param.get("name") not in HOST_PORT_PARAMETERS:
            close = difflib.get_close_matches(str(param.get("name")), HOST_PORT_PARAMETERS, n=1, cutoff=0.6)
            hint = f"; did you mean {_show(close[0])}?" if close else ""
            warnings.append(f"{where}.name: {_show(param.get('name'))} is not a {network_type} parameter (known: "
                            f"{', '.join(HOST_PORT_PARAMETERS)}){hint}; it is ignored")
            continue
        try:
            container, ports = parse_container_ports(str(param.get("value")))
        except ValueError as err:
            problems.append(f"{where}.value: {err}")
            continue
        if container not in containers:
            problems.append(f"{where}.value: container {_show(container)} is not in spec.gameServerTemplate "
                            f"(containers: {', '.join(str(c) for c in containers)})")
        if container in seen:
            problems.append(f"{where}.value: container {_show(container)} already has ContainerPorts in "
                            f"networkConf[{seen[container]}] (upstream would silently keep only the last)")
        seen[container] = i
        taken: set[tuple[int, str]] = set()
        for port, protocol in ports:
            for single in (("TCP", "UDP") if protocol == "TCPUDP" else (protocol,)):
                if port is not None and (port, single) in taken:
                    problems.append(f"{where}.value: {port}/{single} is listed twice")
                if port is not None:
                    taken.add((port, single))
    if not seen and not problems:
        warnings.append(f"spec.network.networkConf: no ContainerPorts: {network_type} allocates no host port and "
                        "the network never becomes Ready (as upstream); add e.g. {name: ContainerPorts, value: "
                        f"\"{containers[0]}:7777/TCP\"}}")
    return problems, warnings


def load_documents(text: str, source: str) -> list[LoadedObject]:
    """Parse and validate every document; raise InvalidObject with all problems of all documents."""
    docs = parse_yaml_documents(text, source)
    if not docs:
        raise InvalidObject([f"{source}: no objects found"])
    loaded: list[LoadedObject] = []
    problems: list[str] = []
    for i, doc in enumerate(docs):
        where = source if len(docs) == 1 else f"{source} (document {i + 1})"
        try:
            loaded.append(validate_object(doc, where))
        except InvalidObject as err:
            problems.extend(err.problems)
    if problems:
        raise InvalidObject(problems)
    return loaded
