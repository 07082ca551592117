"""Renders our Helm chart's templates without helm (no helm binary can be installed here).

It implements only the Go-template constructs the chart uses, with Helm's meaning, and fails loudly on
anything else, so a template that reaches for more cannot pass unnoticed: actions `{{ }}` with trim markers
`{{-` / `-}}`, `if` / `else` / `end` (Go truthiness), field paths (`.Values.a.b`, `.Release.Namespace`,
`.Chart.AppVersion`), and the pipeline functions `default`, `quote`, `toYaml`, `nindent`. When a real `helm`
is on PATH, tests/kube/test_manifests.py also checks `helm template` and `helm lint`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)


class TemplateUnsupported(Exception):
    pass


def _lookup(path: str, context: dict[str, Any]) -> Any:
    if not path.startswith("."):
        raise TemplateUnsupported(f"unsupported operand {path!r}")
    value: Any = context
    for part in path.strip(".").split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _operand(token: str, context: dict[str, Any]) -> Any:
    if token.startswith('"') and token.endswith('"'):
        return json.loads(token)
    if re.fullmatch(r"-?\d+", token):
        return int(token)
    return _lookup(token, context)


def _evaluate(expression: str, context: dict[str, Any]) -> Any:
    stages = [s.strip() for s in expression.split("|")]
    first = stages[0].split()
    if first[0] == "toYaml" and len(first) == 2:
        value: Any = yaml.safe_dump(_operand(first[1], context), sort_keys=True).rstrip("\n")
    elif len(first) == 1:
        value = _operand(first[0], context)
    else:
        raise TemplateUnsupported(f"unsupported expression {stages[0]!r}")
    for stage in stages[1:]:
        words = stage.split()
        if words[0] == "default" and len(words) == 2:
            value = value if value not in (None, "", 0, False, [], {}) else _operand(words[1], context)
        elif words == ["quote"]:
            value = json.dumps("" if value is None else str(value))
        elif words[0] == "nindent" and len(words) == 2:
            pad = " " * int(words[1])
            value = "\n" + "\n".join(pad + line if line else line for line in str(value).splitlines())
        else:
            raise TemplateUnsupported(f"unsupported pipeline stage {stage!r}")
    return value


def _text(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render(template: str, context: dict[str, Any]) -> str:
    pieces: list[Any] = []  # str (text) or tuple (action, trim_left, trim_right)
    pos = 0
    for match in _ACTION.finditer(template):
        pieces.append(template[pos:match.start()])
        pieces.append((match.group(2), bool(match.group(1)), bool(match.group(3))))
        pos = match.end()
    pieces.append(template[pos:])
    for i, piece in enumerate(pieces):
        if isinstance(piece, tuple):
            if piece[1] and i > 0:
                pieces[i - 1] = pieces[i - 1].rstrip(" \t\r\n")
            if piece[2] and i + 1 < len(pieces):
                pieces[i + 1] = pieces[i + 1].lstrip(" \t\r\n")
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (this branch taken, enclosing branches active)

    def active() -> bool:
        return all(taken for taken, _ in stack)

    for piece in pieces:
        if isinstance(piece, str):
            if active():
                out.append(piece)
            continue
        action = piece[0]
        if action.startswith("if "):
            enclosing = active()
            condition = _evaluate(action[3:], {**context}) if enclosing else False
            stack.append((bool(condition) and condition not in ("", 0, [], {}), enclosing))
        elif action == "else":
            if not stack:
                raise TemplateUnsupported("else without if")
            taken, enclosing = stack.pop()
            stack.append((not taken, enclosing))
        elif action == "end":
            if not stack:
                raise TemplateUnsupported("end without if")
            stack.pop()
        elif action.startswith("/*"):
            continue
        elif active():
            out.append(_text(_evaluate(action, context)))
    if stack:
        raise TemplateUnsupported("unclosed if")
    return "".join(out)


def render_chart(chart: Path, namespace: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """`helm template --namespace NAMESPACE chart` (templates only; Helm installs crds/ separately)."""
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    merged = _merge(yaml.safe_load((chart / "values.yaml").read_text()), values or {})
    context = {
        "Values": merged,
        "Release": {"Namespace": namespace, "Name": "gamekeeper", "Service": "Helm"},
        "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"]},
    }
    docs: list[dict[str, Any]] = []
    for path in sorted((chart / "templates").glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(render(path.read_text(), context)) if d)
    return docs


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: _merge(base.get(k), v) for k, v in override.items()}}
    return override
