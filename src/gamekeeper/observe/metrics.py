"""Prometheus metrics: upstream's `okg_*` series (same names, types and labels) and our own.

The `okg_*` series follow upstream's informer handlers (spec §7): they are updated per object as the change
feed reports GameServers and GameServerSets, so a scrape never walks the whole fleet. Ours describe the
machinery: probe outcomes, durations, timeouts and skipped ticks, reconcile queues and durations.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gamekeeper.api.models import OWNER_GSS_KEY
from gamekeeper.api.times import parse_time


def _int_value(value: Any) -> int:
    """Go IntOrString.IntValue(): an int as is, a numeric string parsed, anything else 0."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return 0


@dataclass
class _GsSeen:
    state: str
    ops_state: str
    gss: str
    network_ready: bool


class FleetMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.state_count = Gauge("okg_gameservers_state_count", "The number of gameservers per state",
                                 ["state"], registry=r)
        self.ops_state_count = Gauge("okg_gameservers_opsState_count", "The number of gameservers per opsState",
                                     ["opsState", "gssName", "namespace"], registry=r)
        self.total = Counter("okg_gameservers_total", "The total of gameservers", registry=r)
        self.replicas = Gauge("okg_gameserversets_replicas_count", "The number of replicas of a GameServerSet",
                              ["gssName", "gssNs", "gsStatus"], registry=r)
        self.deletion_priority = Gauge("okg_gameserver_deletion_priority", "The deletionPriority of a gameserver",
                                       ["gsName", "gsNs"], registry=r)
        self.update_priority = Gauge("okg_gameserver_update_priority", "The updatePriority of a gameserver",
                                     ["gsName", "gsNs"], registry=r)
        self.ready_duration = Gauge("okg_gameserver_ready_duration_seconds",
                                    "Seconds from creation to Ready", ["gsName", "gsNs", "gssName"], registry=r)
        self.network_ready_duration = Gauge("okg_gameserver_network_ready_duration_seconds",
                                            "Seconds from creation to network Ready",
                                            ["gsName", "gsNs", "gssName"], registry=r)
        self.probe_duration = Histogram(
            "gamekeeper_probe_duration_seconds", "Time a probe took, start to result",
            ["gssName", "quality"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.reconcile_duration = Histogram(
            "gamekeeper_reconcile_duration_seconds", "Time one reconcile took", ["controller"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
        )
        self._seen: dict[tuple[str, str], _GsSeen] = {}

    # -- upstream's informer handlers --------------------------------------------------------------------

    def game_server(self, namespace: str, name: str, gs: dict[str, Any] | None, now: datetime) -> None:
        """Record an add, update or delete (gs None) of one GameServer."""
        key = (namespace, name)
        old = self._seen.get(key)
        if gs is None:
            if old is not None:
                self.state_count.labels(old.state).dec()
                self.ops_state_count.labels(old.ops_state, old.gss, namespace).dec()
                for gauge in (self.deletion_priority, self.update_priority):
                    gauge.remove(name, namespace)
                for gauge in (self.ready_duration, self.network_ready_duration):
                    with contextlib.suppress(KeyError):
                        gauge.remove(name, namespace, old.gss)
                del self._seen[key]
            return
        status = gs.get("status") or {}
        spec = gs.get("spec") or {}
        gss = (gs["metadata"].get("labels") or {}).get(OWNER_GSS_KEY, "")
        new = _GsSeen(
            state=str(status.get("currentState") or ""),
            ops_state=str(spec.get("opsState") or ""),
            gss=gss,
            network_ready=(status.get("networkStatus") or {}).get("currentNetworkState") == "Ready",
        )
        created = parse_time(gs["metadata"].get("creationTimestamp"))
        if old is None:
            self.total.inc()
            self.state_count.labels(new.state).inc()
            self.ops_state_count.labels(new.ops_state, gss, namespace).inc()
        else:
            if old.state != new.state:
                self.state_count.labels(old.state).dec()
                self.state_count.labels(new.state).inc()
                if new.state == "Ready":
                    self.ready_duration.labels(name, namespace, gss).set((now - created).total_seconds())
            if old.ops_state != new.ops_state or old.gss != new.gss:
                self.ops_state_count.labels(old.ops_state, old.gss, namespace).dec()
                self.ops_state_count.labels(new.ops_state, gss, namespace).inc()
            if new.network_ready and not old.network_ready:
                self.network_ready_duration.labels(name, namespace, gss).set((now - created).total_seconds())
        self.deletion_priority.labels(name, namespace).set(_int_value(status.get("deletionPriority")))
        self.update_priority.labels(name, namespace).set(_int_value(status.get("updatePriority")))
        self._seen[key] = new

    def game_server_set(self, namespace: str, name: str, gss: dict[str, Any] | None) -> None:
        statuses = ("current", "ready", "available", "maintaining", "waitToBeDeleted")
        if gss is None:
            for status in statuses:
                with contextlib.suppress(KeyError):
                    self.replicas.remove(name, namespace, status)
            return
        st = gss.get("status") or {}
        values = {
            "current": st.get("currentReplicas", 0),
            "ready": st.get("readyReplicas", 0),
            "available": st.get("availableReplicas", 0),
            "maintaining": st.get("maintainingReplicas"),
            "waitToBeDeleted": st.get("waitToBeDeletedReplicas"),
        }
        for status, value in values.items():
            if value is not None:
                self.replicas.labels(name, namespace, status).set(value)


class ProbeStatsCollector(Collector):
    """Reads the prober's counters at scrape time (no work on the probe path)."""

    def __init__(self, stats: Callable[[], Any], queues: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self.stats = stats
        self.queues = queues

    def collect(self) -> Iterable[Any]:
        stats = self.stats()
        outcomes = CounterMetricFamily(
            "gamekeeper_probe_outcomes", "Probe runs by set, quality and outcome", labels=["gssName", "quality",
                                                                                          "result"])
        timeouts = CounterMetricFamily("gamekeeper_probe_timeouts", "Probes killed at their timeout")
        skipped = CounterMetricFamily(
            "gamekeeper_probes_skipped", "Probe ticks skipped because the previous run was still going")
        writes = CounterMetricFamily("gamekeeper_probe_condition_writes", "Pod-condition writes by the prober")
        if stats is not None:
            for (gss, quality, success), count in sorted(stats.outcomes.items()):
                outcomes.add_metric([gss, quality, "success" if success else "failure"], count)
            timeouts.add_metric([], stats.timeouts)
            skipped.add_metric([], stats.skipped)
            writes.add_metric([], stats.writes)
        depth = GaugeMetricFamily("gamekeeper_reconcile_queue_depth", "Keys waiting in each work queue",
                                  labels=["queue"])
        for name, value in self.queues():
            depth.add_metric([name], value)
        yield from (outcomes, timeouts, skipped, writes, depth)


class RecoveryStatsCollector(Collector):
    """The recovery controller's counters (docs/recovery.md), read at scrape time."""

    def __init__(self, stats: Callable[[], Any]) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Any]:
        stats = self.stats()
        total = CounterMetricFamily("gamekeeper_recoveries", "Recovery attempts by set, quality, step kind and "
                                    "outcome (started, succeeded, failed, interrupted, exhausted)",
                                    labels=["set", "quality", "kind", "outcome"])
        flying = GaugeMetricFamily("gamekeeper_recoveries_in_flight", "Game servers with a recovery in progress",
                                   labels=["set"])
        if stats is not None:
            for (gss, quality, kind, outcome), count in sorted(stats.outcomes.items()):
                total.add_metric([gss, quality, kind, outcome], count)
            for gss, count in sorted(stats.in_flight().items()):
                flying.add_metric([gss], count)
        yield from (total, flying)
