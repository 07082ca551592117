"""`kubectl get` as kubectl prints a custom resource: NAME, then the CRD's additionalPrinterColumns."""

from __future__ import annotations

from typing import Any

from gamekeeper.kube.crds import gameserver_crd, gameserverset_crd


def _lookup(obj: dict[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "<none>" if value is None else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def table(crd: dict[str, Any], objects: list[dict[str, Any]]) -> list[list[str]]:
    """Header and rows, without the AGE column (its text depends on the clock)."""
    columns = [c for c in crd["spec"]["versions"][0]["additionalPrinterColumns"] if c["type"] != "date"]
    header = ["NAME", *(c["name"].upper() for c in columns)]
    rows = [[o["metadata"]["name"], *(_cell(_lookup(o, c["jsonPath"])) for c in columns)] for o in objects]
    return [header, *rows]


def get_gs(objects: list[dict[str, Any]]) -> list[list[str]]:
    return table(gameserver_crd(), objects)


def get_gss(objects: list[dict[str, Any]]) -> list[list[str]]:
    return table(gameserverset_crd(), objects)
