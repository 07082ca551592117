"""deploy/grafana/gamekeeper.json queries only series (and labels) that /metrics really exposes, and offers the
variables OKG's dashboard uses."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

from prometheus_client import generate_latest

from gamekeeper.observe.metrics import FleetMetrics, ProbeStatsCollector

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "gamekeeper.json"
SELECTOR = re.compile(r"\b((?:okg|gamekeeper)_[A-Za-z0-9_]+)(\{[^}]*\})?")


def exposed() -> dict[str, set[str]]:
    """Sample name -> label names, from a registry that has seen one set, one server, one probe, one reconcile."""
    metrics = FleetMetrics()
    stats = SimpleNamespace(outcomes={("minecraft", "idle", True): 3}, timeouts=1, skipped=0, writes=2)
    metrics.registry.register(ProbeStatsCollector(lambda: stats, lambda: [("gameserver", 0)]))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    gs = {"apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServer",
          "metadata": {"name": "minecraft-0", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z",
                       "labels": {"game.kruise.io/owner-gss": "minecraft"}},
          "spec": {"opsState": "WaitToBeDeleted"},
          "status": {"currentState": "Ready", "deletionPriority": 0, "updatePriority": 0,
                     "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"}]}}
    metrics.game_server("default", "minecraft-0", {**gs, "status": {"currentState": "Creating"}}, now)
    metrics.game_server("default", "minecraft-0", gs, now)  # the turn to Ready sets the ready duration
    metrics.game_server_set("default", "minecraft", {
        "metadata": {"name": "minecraft", "namespace": "default"}, "spec": {"replicas": 1},
        "status": {"currentReplicas": 1, "readyReplicas": 1}})
    metrics.probe_duration.labels("minecraft", "idle").observe(0.01)
    metrics.reconcile_duration.labels("gameserver").observe(0.001)
    out: dict[str, set[str]] = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith("#") or not line:
            continue
        m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{([^}]*)\})?", line)
        assert m
        labels = {kv.split("=", 1)[0] for kv in re.findall(r'(\w+)="', m.group(3) or "")}
        out.setdefault(m.group(1), set()).update(labels)
    return out


def test_every_query_uses_exposed_series_and_labels() -> None:
    doc = json.loads(DASHBOARD.read_text())
    series = exposed()
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in doc["templating"]["list"] if v["type"] == "query"]
    assert len(exprs) > 15
    used = set()
    for expr in exprs:
        for name, matchers in SELECTOR.findall(expr):
            assert name in series, f"{name} (in {expr}) is not exposed; exposed: {sorted(series)}"
            used.add(name)
            for label in re.findall(r"(\w+)\s*(?:=~|!=|!~|=)", matchers):
                assert label in series[name], f"{name} has no label {label} (in {expr})"
    assert {"okg_gameservers_opsState_count", "okg_gameservers_state_count", "gamekeeper_probe_outcomes_total",
            "gamekeeper_probe_duration_seconds_bucket", "gamekeeper_reconcile_duration_seconds_bucket"} <= used


def test_variables_are_okgs() -> None:
    doc = json.loads(DASHBOARD.read_text())
    names = [v["name"] for v in doc["templating"]["list"]]
    assert {"namespace", "gssName", "gsName"} <= set(names)
    text = json.dumps(doc["panels"])
    for name in ("$namespace", "$gssName", "$gsName"):
        assert name in text
