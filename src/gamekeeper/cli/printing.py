"""kubectl-shaped output: tables with the same columns and spacing, ages, YAML/JSON objects."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gamekeeper.api.keys import OWNER_GSS_KEY
from gamekeeper.api.times import parse_time


def human_duration(seconds: float) -> str:
    """kubectl's HumanDuration (k8s.io/apimachinery/pkg/util/duration)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        years, days = hours // 24 // 365, (hours // 24) % 365
        return f"{years}y" if days == 0 else f"{years}y{days}d"
    return f"{hours // 24 // 365}y"


def age(obj: dict[str, Any], now: datetime) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    return human_duration((now - parse_time(created)).total_seconds())


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """kubectl's tabwriter layout: columns padded to their widest cell plus three spaces."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *[list(r) for r in rows]]:
        cells = [cell.ljust(widths[i]) if i < len(row) - 1 else cell for i, cell in enumerate(row)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def _text(value: Any) -> str:
    if value is None:
        return "<none>"
    return str(value)


def gs_row(gs: dict[str, Any], now: datetime, wide: bool = False, pod: dict[str, Any] | None = None) -> list[str]:
    status = gs.get("status") or {}
    spec = gs.get("spec") or {}
    row = [
        gs["metadata"]["name"],
        _text(status.get("currentState")),
        _text(spec.get("opsState")),
        _text(status.get("deletionPriority")),
        _text(status.get("updatePriority")),
        age(gs, now),
    ]
    if wide:
        restarts = sum(cs.get("restartCount", 0) for cs in ((pod or {}).get("status") or {}).get(
            "containerStatuses") or [])
        results = ",".join(
            f"{c['name']}={c.get('result', '')}" for c in status.get("serviceQualitiesConditions") or []
            if "status" in c
        )
        row += [
            (gs["metadata"].get("labels") or {}).get(OWNER_GSS_KEY, "<none>"),
            str(restarts),
            ports_text(status.get("networkStatus")),
            results or "<none>",
        ]
    return row


def ports_text(network: dict[str, Any] | None) -> str:
    """networkStatus as `EXTERNAL_IP:PORT->CONTAINER_PORT/PROTOCOL`, comma-separated (docker ps style)."""
    internal = {
        (p.get("name"), p.get("protocol")): p.get("port")
        for address in (network or {}).get("internalAddresses") or [] for p in address.get("ports") or []
    }
    parts = [
        f"{address.get('ip')}:{p.get('port')}->{internal.get((p.get('name'), p.get('protocol')), '?')}"
        f"/{p.get('protocol') or 'TCP'}"
        for address in (network or {}).get("externalAddresses") or [] for p in address.get("ports") or []
    ]
    return ",".join(parts) or "<none>"


GS_HEADERS = ["NAME", "STATE", "OPSSTATE", "DP", "UP", "AGE"]
GS_WIDE_HEADERS = [*GS_HEADERS, "GSS", "RESTARTS", "PORTS", "RESULTS"]
GSS_HEADERS = ["NAME", "DESIRED", "CURRENT", "UPDATED", "READY", "MAINTAINING", "WAITTOBEDELETED", "PREDELETE", "AGE"]
GSS_WIDE_HEADERS = [*GSS_HEADERS, "SELECTOR"]
POD_HEADERS = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]


def gss_row(gss: dict[str, Any], now: datetime, wide: bool = False) -> list[str]:
    status = gss.get("status") or {}
    row = [
        gss["metadata"]["name"],
        str(gss["spec"]["replicas"]),
        _text(status.get("currentReplicas")),
        _text(status.get("updatedReplicas")),
        _text(status.get("readyReplicas")),
        _text(status.get("maintainingReplicas")),
        _text(status.get("waitToBeDeletedReplicas")),
        _text(status.get("preDeleteReplicas")),
        age(gss, now),
    ]
    if wide:
        row.append(_text(status.get("labelSelector")))
    return row


def pod_row(pod: dict[str, Any], now: datetime) -> list[str]:
    status = pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for cs in statuses if cs.get("ready"))
    reason = status.get("phase") or "Pending"
    for cs in statuses:
        st = cs.get("state") or {}
        if "waiting" in st and st["waiting"].get("reason"):
            reason = st["waiting"]["reason"]
        elif "terminated" in st and st["terminated"].get("reason") and reason == "Running":
            reason = st["terminated"]["reason"]
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(cs.get("restartCount", 0) for cs in statuses)
    return [
        pod["metadata"]["name"],
        f"{ready}/{len(pod['spec']['containers'])}",
        reason,
        str(restarts),
        age(pod, now),
    ]


def to_output(objects: list[dict[str, Any]], fmt: str, single: bool) -> str:
    """`-o json|yaml`: one object as itself, several as a v1 List with `items`."""
    data: Any = objects[0] if single else {"apiVersion": "v1", "kind": "List", "items": objects,
                                             "metadata": {"resourceVersion": ""}}
    if fmt == "json":
        return json.dumps(data, indent=4)
    import yaml  # here: only -o yaml needs it

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip()


def labels_text(obj: dict[str, Any]) -> str:
    """kubectl's LABELS cell: k=v pairs sorted by key, comma-separated."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


def with_labels(
    headers: Sequence[str], rows: Sequence[Sequence[str]], items: Sequence[dict[str, Any]], show: bool
) -> tuple[list[str], list[list[str]]]:
    """`--show-labels`: the table with a LABELS column last."""
    if not show:
        return list(headers), [list(r) for r in rows]
    return [*headers, "LABELS"], [[*r, labels_text(o)] for r, o in zip(rows, items, strict=True)]
