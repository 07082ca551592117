"""Hostile documents for `gk apply` and `gk patch`, generated from a seed (the same seed, the same documents).

Each case is (command, target, payload bytes, class): valid objects mutated at a random field, YAML-level
attacks (anchors and alias bombs, deep nesting, complex keys, tags, multi-document files with one bad
document, truncation), encodings (Latin-1, UTF-16 with and without a byte-order mark, random bytes), names that
are not DNS-1123 or hold path separators, and JSON merge patches to GameServerSets, GameServers and pods.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import yaml

IMAGE = "registry.cn-hangzhou.aliyuncs.com/gs-demo/gameserver:idle"


@dataclass(frozen=True)
class Case:
    command: str  # "apply" or "patch"
    target: tuple[str, str]  # (resource, name) for a patch; ("", "") for apply
    payload: bytes
    kind: str  # the generator that made it, for the figures


def base_gss(rng: random.Random) -> dict[str, Any]:
    name = rng.choice(["fuzz", "arena", "pool", "gs"]) + f"-{rng.randrange(6)}"
    return {
        "apiVersion": "game.kruise.io/v1alpha1",
        "kind": "GameServerSet",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "fuzz"}},
        "spec": {
            "replicas": rng.randrange(0, 4),
            "reserveGameServerIds": [rng.randrange(5), "6-8"],
            "gameServerTemplate": {
                "metadata": {"labels": {"tier": "game"}, "annotations": {"note": "x"}},
                "spec": {
                    "containers": [{
                        "name": "game", "image": IMAGE, "command": ["python3", "server.py"],
                        "env": [{"name": "GAME_MODE", "value": "ffa"}],
                        "ports": [{"name": "game", "containerPort": 7777, "protocol": "UDP"}],
                        "workingDir": "/data",
                    }],
                    "terminationGracePeriodSeconds": 5,
                },
            },
            "updateStrategy": {"rollingUpdate": {"podUpdatePolicy": "InPlaceIfPossible", "maxUnavailable": "50%"}},
            "serviceQualities": [{
                "name": "idle", "containerName": "game", "permanent": False, "periodSeconds": 3,
                "exec": {"command": ["bash", "-c", "echo idle"]},
                "serviceQualityAction": [
                    {"state": True, "result": "idle", "opsState": "WaitToBeDeleted"},
                    {"state": True, "result": "busy", "opsState": "None", "labels": {"r": "{{.Result}}"},
                     "deletionPriority": 10},
                ],
            }],
        },
    }


def base_gs(rng: random.Random) -> dict[str, Any]:
    return {
        "apiVersion": "game.kruise.io/v1alpha1",
        "kind": "GameServer",
        "metadata": {"name": f"solo-{rng.randrange(4)}", "namespace": "default"},
        "spec": {"opsState": "None", "deletionPriority": 5, "updatePriority": 1, "networkDisabled": False},
    }


def _long(n: int) -> str:
    return "x" * n


HOSTILE_VALUES: list[Callable[[random.Random], Any]] = [
    lambda r: None, lambda r: True, lambda r: "3", lambda r: "yes", lambda r: 3.5, lambda r: [], lambda r: {},
    lambda r: [1, "a", None], lambda r: {"unknownField": 1},
    lambda r: 2**31, lambda r: 2**31 - 1, lambda r: -(2**31) - 1, lambda r: 2**63, lambda r: 10**30, lambda r: -1,
    lambda r: 0, lambda r: 1e308, lambda r: float("inf"), lambda r: float("nan"),
    lambda r: "", lambda r: _long(64), lambda r: _long(300), lambda r: _long(70_000), lambda r: _long(2_000_000),
    lambda r: "a\x00b", lambda r: "tab\tand\x1bescape\x07", lambda r: "line\nbreak", lambda r: "名前",
    lambda r: "../../../../etc", lambda r: "a/b", lambda r: "/abs/path", lambda r: "a b", lambda r: "UPPER",
    lambda r: "-lead", lambda r: "trail-", lambda r: "a..b", lambda r: "x=y", lambda r: "{{.Result}}",
    lambda r: "0-100000000000", lambda r: "5-1", lambda r: "Kill", lambda r: "kill", lambda r: "{{ .Bad",
    lambda r: "".join(chr(r.randrange(1, 0x2FF)) for _ in range(r.randrange(1, 40))),
]

BAD_NAMES = ["A", "a_b", "a/b", "../x", "a" * 64, "a" * 53, "", "-a", "a.", "名前", "a b", "x\x00y", "..", "a.b",
             "CON", "a\\b", "a%2Fb"]

BAD_KEYS = ["a b", "/x", "x/", "a/b/c", "-a", "a" * 64, "p." * 130 + "/k", "ok.example.com/" + "k" * 63,
            "example.com/ok", "UPPER.com/x", "é", "", "k\x00"]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(doc, dict):
        for key, value in doc.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _paths(value, (*prefix, i))


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


def _delete(doc: Any, path: tuple[Any, ...]) -> Any:
    node = doc
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return doc


def mutate(rng: random.Random, doc: dict[str, Any], times: int = 1) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    for _ in range(times):
        paths = [p for p in _paths(out) if p]
        if not paths:
            break
        path = rng.choice(paths)
        choice = rng.random()
        if choice < 0.6:
            out = _set(out, path, rng.choice(HOSTILE_VALUES)(rng))
        elif choice < 0.75:
            _delete(out, path)
        elif choice < 0.85:
            parent = out
            for part in path[:-1]:
                parent = parent[part]
            if isinstance(parent, dict):
                parent[rng.choice(["unknownField", "Replicas", "spec", "opsstate", rng.choice(BAD_KEYS)])] = 1
        elif choice < 0.95:
            where = rng.choice([("metadata", "labels"), ("metadata", "annotations")])
            meta = out.setdefault(where[0], {})
            if isinstance(meta, dict):
                meta[where[1]] = {rng.choice(BAD_KEYS): rng.choice([rng.choice(HOSTILE_VALUES)(rng), "ok"])}
        else:
            if isinstance(out.get("metadata"), dict):
                out["metadata"]["name"] = rng.choice(BAD_NAMES)
    return out


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=10**9)


def _deep(rng: random.Random) -> str:
    depth = rng.choice([70, 500, 5000, 50_000])
    if rng.random() < 0.5:
        return "spec: " + "[" * depth + "]" * depth + "\n"
    return "spec:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, min(depth, 400)))


def _bomb(rng: random.Random) -> str:
    """Billion laughs: each level nine aliases of the one before, used as a value of the object."""
    levels = rng.choice([3, 6, 9])
    lines = ['x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    doc = _dump(base_gss(rng)).replace("  replicas:", f"  lifecycle: {{x: *a{levels - 1}}}\n  replicas:", 1)
    return "\n".join(lines) + "\n" + doc


def yaml_attack(rng: random.Random) -> bytes:
    gss = base_gss(rng)
    text = _dump(gss)
    pick = rng.randrange(13)
    if pick == 0:
        text = _deep(rng)
    elif pick == 1:
        text = _bomb(rng)
    elif pick == 2:
        text = text.replace("  replicas:", "  ? [a, b]\n  : c\n  replicas:", 1)
    elif pick == 3:
        text = text.replace("  replicas:", "  {k: 1}: 2\n  replicas:", 1)
    elif pick == 4:
        text = text.replace("  replicas:", "  replicas: 1\n  replicas:", 1)
    elif pick == 5:
        tag = rng.choice(["!!binary AAEC", "!!set {a, b}", "!!omap [a: 1]", "!!python/object:os.system x",
                          "!!timestamp 2024-01-01", "!!float nan", "!!int 1" + "0" * 5000, "!custom x"])
        text = text.replace("  replicas:", f"  lifecycle: {{x: {tag}}}\n  replicas:", 1)
    elif pick == 6:
        bad = _dump(mutate(rng, base_gss(rng), 2))
        text = text + "---\n" + rng.choice([bad, "- 1\n- 2\n", "just a string\n", "a: [\n", "kind: Pod\n"])
    elif pick == 7:
        text = text[: rng.randrange(len(text))]
    elif pick == 8:
        text = text.replace("name: idle", "name: &q idle", 1).replace("containerName: game", "containerName: *q")
    elif pick == 9:
        text = text.replace("  replicas:", "  a: &x {k: 1}\n  <<: *x\n  replicas:", 1)
    elif pick == 10:
        text = "\t" + text
    elif pick == 11:
        text = text.replace("replicas: ", "replicas: " + rng.choice(["0x10", "1_000", "+3", "0o7", "3.0", "~"]), 1)
    else:
        text = "a: &a [*a]\n" if rng.random() < 0.5 else text.replace("replicas:", "replicas: *nope\n  x:", 1)
    return text.encode("utf-8", errors="surrogatepass")


def encoding_attack(rng: random.Random) -> bytes:
    text = _dump(base_gss(rng))
    pick = rng.randrange(7)
    if pick == 0:
        return text.replace("fuzz", "fûzz").replace("game", "gâme").encode("latin-1", errors="replace")
    if pick == 1:
        return text.encode("utf-16")
    if pick == 2:
        return text.encode("utf-16-le")
    if pick == 3:
        return text.encode("utf-32")
    if pick == 4:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
    if pick == 5:
        raw = bytearray(text.encode())
        for _ in range(rng.randrange(1, 4)):
            raw[rng.randrange(len(raw))] = rng.randrange(128, 256)
        return bytes(raw)
    return b"\xef\xbb\xbf" + text.encode()


def _patch_body(rng: random.Random, resource: str) -> Any:
    if resource == "pod":
        base: dict[str, Any] = {
            "metadata": {"labels": {"x": "1"}, "annotations": {"a": "b"}},
            "spec": {"containers": [{"name": "game", "image": IMAGE}], "activeDeadlineSeconds": 100},
        }
    elif resource == "gs":
        base = {"spec": {"opsState": "Allocated", "deletionPriority": 3}, "metadata": {"labels": {"k": "v"}}}
    else:
        base = {"spec": {"replicas": 2, "reserveGameServerIds": [1], "serviceQualities": base_gss(rng)["spec"][
            "serviceQualities"]}}
    pick = rng.random()
    if pick < 0.7:
        return mutate(rng, base, rng.randrange(1, 3))
    if pick < 0.8:
        return rng.choice([[1], "x", 3, None, {"status": {"replicas": 9}}, {"metadata": {"name": "other"}},
                           {"metadata": None}, {"spec": None}, {"kind": "Pod"}, {"metadata": {"uid": "u"}}])
    return base


def patch_text(rng: random.Random, resource: str) -> bytes:
    pick = rng.random()
    if pick < 0.08:
        return rng.choice(["{not json", "", "[", '{"a":' * 3000 + "1" + "}" * 3000, "[" * 100_000,
                           '{"spec": NaN}', '{"spec": {"replicas": 1e999}}', '{"a": "\\ud800"}']).encode()
    body = _patch_body(rng, resource)
    return json.dumps(body, allow_nan=True).encode()


def cases(seed: int, count: int) -> Iterator[Case]:
    rng = random.Random(seed)
    for _ in range(count):
        pick = rng.random()
        if pick < 0.35:
            base = base_gss(rng) if rng.random() < 0.8 else base_gs(rng)
            doc = mutate(rng, base, rng.choice([0, 1, 1, 1, 2, 3]))
            yield Case("apply", ("", ""), _dump(doc).encode("utf-8", errors="surrogatepass"), "mutated-object")
        elif pick < 0.55:
            yield Case("apply", ("", ""), yaml_attack(rng), "yaml")
        elif pick < 0.62:
            yield Case("apply", ("", ""), encoding_attack(rng), "encoding")
        else:
            resource = rng.choice(["gss", "gs", "pod"])
            name = {"gss": "fuzz-0", "gs": "fuzz-0-0", "pod": "fuzz-0-0"}[resource]
            yield Case("patch", (resource, name), patch_text(rng, resource), f"patch-{resource}")
