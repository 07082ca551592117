"""`gk describe`: kubectl-describe-like text for GameServers and GameServerSets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import yaml

from gamekeeper.api.times import parse_time
from gamekeeper.cli.printing import human_duration, ports_text, table
from gamekeeper.ports.store import EventRecord


def _ago(stamp: str | None, now: datetime) -> str:
    if not stamp:
        return "<never>"
    return human_duration((now - parse_time(stamp)).total_seconds()) + " ago"


def _map(title: str, data: dict[str, str] | None) -> list[str]:
    items = sorted((data or {}).items())
    if not items:
        return [f"{title:<13}<none>"]
    lines = [f"{title:<13}{items[0][0]}={items[0][1]}"]
    lines += [f"{'':<13}{k}={v}" for k, v in items[1:]]
    return lines


def _block(title: str, data: Any) -> list[str]:
    if not data:
        return [f"{title}:  <none>"]
    text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip()
    return [f"{title}:"] + ["  " + line for line in text.splitlines()]


def _events(events: Sequence[EventRecord], now: datetime, limit: int = 20) -> list[str]:
    if not events:
        return ["Events:  <none>"]
    rows = [
        [e.type, e.reason, human_duration((now - parse_time(e.last_timestamp)).total_seconds())
         + (f" (x{e.count} over {human_duration((now - parse_time(e.first_timestamp)).total_seconds())})"
            if e.count > 1 else ""), e.source, e.message]
        for e in list(events)[-limit:]
    ]
    body = table(["Type", "Reason", "Age", "From", "Message"],
                 [["----", "------", "----", "----", "-------"], *rows])
    return ["Events:"] + ["  " + line for line in body.splitlines()]


def _header(obj: dict[str, Any]) -> list[str]:
    meta = obj["metadata"]
    return [
        f"{'Name:':<13}{meta['name']}",
        f"{'Namespace:':<13}{meta.get('namespace', 'default')}",
        *_map("Labels:", meta.get("labels")),
        *_map("Annotations:", meta.get("annotations")),
        f"{'API Version:':<13}{obj.get('apiVersion')}",
        f"{'Kind:':<13}{obj.get('kind')}",
        f"{'Created:':<13}{meta.get('creationTimestamp')}",
    ]


def describe_gs(
    gs: dict[str, Any], pod: dict[str, Any] | None, events: Sequence[EventRecord], now: datetime
) -> str:
    status = gs.get("status") or {}
    lines = _header(gs)
    lines += _block("Spec", gs.get("spec"))
    lines += [
        "Status:",
        f"  Current State:      {status.get('currentState', '<unknown>')}",
        f"  Desired State:      {status.get('desiredState', '<unknown>')}",
        f"  Deletion Priority:  {status.get('deletionPriority', '')}",
        f"  Update Priority:    {status.get('updatePriority', '')}",
        f"  Last Transition:    {_ago(status.get('lastTransitionTime'), now)}",
    ]
    for cond in status.get("conditions") or []:
        reason = f" ({cond.get('reason')}: {cond.get('message', '')})" if cond.get("reason") else ""
        lines.append(f"  Condition {cond['type']}: {cond['status']}{reason}")
    network = status.get("networkStatus")
    if network:
        lines.append(f"  Network:            {network.get('networkType')}  desired={network.get('desiredNetworkState')}"
                     f"  current={network.get('currentNetworkState')}  ports={ports_text(network)}")
    if pod is not None:
        lines.append("Containers:")
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            state = next(iter(cs.get("state") or {"unknown": {}}))
            detail = (cs.get("state") or {}).get(state) or {}
            extra = detail.get("reason") or (f"since {detail.get('startedAt')}" if state == "running" else "")
            lines.append(
                f"  {cs['name']}: {state} {extra}  image={cs.get('image')}  restarts={cs.get('restartCount', 0)}"
                f"  id={cs.get('containerID', '-')}"
            )
    qualities = status.get("serviceQualitiesConditions") or []
    lines.append("Service Qualities:")
    if not qualities:
        lines.append("  <none>")
    else:
        rows = [
            [q["name"], q.get("status", "<no result yet>"), repr(q["result"]) if "result" in q else "",
             _ago(q.get("lastProbeTime"), now), _ago(q.get("lastActionTransitionTime"), now),
             _ago(q.get("lastTransitionTime"), now)]
            for q in qualities
        ]
        body = table(["NAME", "STATUS", "RESULT", "LAST PROBE CHANGE", "LAST ACTION", "LAST TRANSITION"], rows)
        lines += ["  " + line for line in body.splitlines()]
    history = status.get("serviceQualityHistory") or {}
    if history:
        lines.append("Service Quality History (recorded when the result changes, newest last):")
        for name, entries in history.items():
            rows = [[_ago(e.get("time"), now), e.get("status", ""), repr(e.get("result", "")), e.get("action", "")]
                    for e in entries]
            body = table(["WHEN", "STATUS", "RESULT", "ACTION TAKEN"], rows)
            lines.append(f"  {name}:")
            lines += ["    " + line for line in body.splitlines()]
    timeline = status.get("opsStateHistory") or []
    if timeline:
        lines.append("OpsState Timeline:")
        rows = [[_ago(e.get("time"), now), e.get("from") or "-", e.get("to", ""), e.get("by", "")] for e in timeline]
        lines += ["  " + line for line in table(["WHEN", "FROM", "TO", "BY"], rows).splitlines()]
    lines += _recovery(status.get("recovery"), now)
    lines += _events(events, now)
    return "\n".join(lines)


def _recovery(record: dict[str, Any] | None, now: datetime) -> list[str]:
    """status.recovery (docs/recovery.md): the phase, and each attempt with its outcome and output."""
    if not record:
        return []
    detail = [f"quality {record.get('quality')}", f"attempts {record.get('attempt', 0)}"]
    if record.get("blockedBy"):
        detail.append(f"blocked by {record['blockedBy']}")
    if record.get("retryAt"):
        detail.append(f"next attempt at {record['retryAt']}")
    if (record.get("escalation") or {}).get("opsState"):
        detail.append(f"escalated: opsState {record['escalation']['opsState']}")
    lines = [f"Recovery:           {record.get('phase')} ({', '.join(detail)}) since {_ago(record.get('since'), now)}"]
    history = record.get("history") or []
    if history:
        rows = [[str(e.get("attempt", "")), str(e.get("kind", "")), _ago(e.get("startedAt"), now),
                 _ago(e.get("finishedAt"), now) if e.get("finishedAt") else "-", str(e.get("outcome", "")),
                 " ".join(str(e.get("output") or "").split())[:80]] for e in history]
        body = table(["ATTEMPT", "KIND", "STARTED", "FINISHED", "OUTCOME", "OUTPUT"], rows)
        lines.append("Recovery Attempts (newest last):")
        lines += ["  " + line for line in body.splitlines()]
    return lines


def describe_gss(gss: dict[str, Any], events: Sequence[EventRecord], now: datetime) -> str:
    lines = _header(gss)
    lines += _block("Spec", gss.get("spec"))
    lines += _block("Status", gss.get("status"))
    lines += _events(events, now)
    return "\n".join(lines)
