"""The embedded autoscaler's series, read at scrape time from its last decisions (no work on the poll path)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gamekeeper.control.autoscale import Autoscaler


class AutoscaleCollector(Collector):
    def __init__(self, autoscaler: Callable[[], Autoscaler | None]) -> None:
        self.autoscaler = autoscaler

    def collect(self) -> Iterable[Any]:
        labels = ["namespace", "scaledObject", "gssName"]
        desired = GaugeMetricFamily("gamekeeper_autoscaler_desired_replicas",
                                    "The scaler's last gssReplicas answer per ScaledObject", labels=labels)
        replicas = GaugeMetricFamily("gamekeeper_autoscaler_replicas",
                                     "The replicas the autoscaler last decided per ScaledObject", labels=labels)
        ready = GaugeMetricFamily("gamekeeper_autoscaler_ready",
                                  "1 when the last poll could read the set, 0 when it held (no scaling)",
                                  labels=labels)
        scalings = CounterMetricFamily("gamekeeper_autoscaler_scalings",
                                       "Scalings written by the autoscaler", labels=["namespace", "scaledObject",
                                                                                      "direction"])
        scaler = self.autoscaler()
        if scaler is not None:
            for (ns, name), o in sorted(scaler.last.items()):
                if o.scaler_desired is not None:
                    desired.add_metric([ns, name, o.target], o.scaler_desired)
                if o.replicas is not None:
                    replicas.add_metric([ns, name, o.target], o.replicas)
                ready.add_metric([ns, name, o.target], 0 if o.branch == "hold" else 1)
            for (ns, name, direction), count in sorted(scaler.scalings.items()):
                scalings.add_metric([ns, name, direction], count)
        yield from (desired, replicas, ready, scalings)
