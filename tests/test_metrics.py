"""Metrics and health endpoints: upstream's okg_* series checked against a live fleet, and unit behaviour."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gamekeeper.observe.metrics import FleetMetrics
from gamekeeper.observe.server import Health, ObservabilityServer, parse_address
from tests.fleet import Fleet, ops, seed_yaml, state, wait_for

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


def gs(name: str, state: str, ops_state: str, dp: str = "0") -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "default", "labels": {"game.kruise.io/owner-gss": "g"},
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"opsState": ops_state},
        "status": {"currentState": state, "deletionPriority": dp, "updatePriority": "x"},
    }


def test_okg_series_follow_upstream_informer_rules() -> None:
    m = FleetMetrics()
    m.game_server("default", "g-0", gs("g-0", "Creating", "None"), NOW)
    m.game_server("default", "g-1", gs("g-1", "Creating", "None"), NOW)
    m.game_server("default", "g-0", gs("g-0", "Ready", "WaitToBeDeleted", "7"), NOW + timedelta(seconds=12))
    text = generate_latest(m.registry).decode()
    assert value(text, "okg_gameservers_total") == 2
    assert value(text, "okg_gameservers_state_count", state="Ready") == 1
    assert value(text, "okg_gameservers_state_count", state="Creating") == 1
    assert value(text, "okg_gameservers_opsState_count", opsState="WaitToBeDeleted", gssName="g",
                 namespace="default") == 1
    assert value(text, "okg_gameserver_deletion_priority", gsName="g-0", gsNs="default") == 7
    assert value(text, "okg_gameserver_update_priority", gsName="g-0", gsNs="default") == 0  # IntValue of "x"
    assert value(text, "okg_gameserver_ready_duration_seconds", gsName="g-0", gsNs="default", gssName="g") == 12
    m.game_server("default", "g-0", None, NOW)
    text = generate_latest(m.registry).decode()
    assert value(text, "okg_gameservers_state_count", state="Ready") == 0
    assert value(text, "okg_gameserver_deletion_priority", gsName="g-0", gsNs="default") is None
    assert value(text, "okg_gameservers_total") == 2  # a counter: deletions do not lower it


def test_health_endpoints_and_address_parsing() -> None:
    assert parse_address("127.0.0.1:9090") == ("127.0.0.1", 9090)
    assert parse_address(":8080") == ("0.0.0.0", 8080)
    with pytest.raises(ValueError):
        parse_address("localhost:http")
    health = Health(stale_after=30)
    ready = {"ok": False}
    health.ready_checks.append(lambda: (ready["ok"], "controllers not started yet"))
    server = ObservabilityServer("127.0.0.1:0", FleetMetrics().registry, health)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert urllib.request.urlopen(base + "/healthz").status == 200
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/readyz")
        assert err.value.code == 503
        ready["ok"] = True
        assert urllib.request.urlopen(base + "/readyz").status == 200
        health.last_beat -= 100  # the event loop stopped beating
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(base + "/healthz")
        assert err.value.code == 503
    finally:
        server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_metrics_match_the_fleet_during_the_maintaining_scenario(fleet: Fleet) -> None:
    port = free_port()
    fleet.state_dir.mkdir(parents=True, exist_ok=True)
    log = open(fleet.tmp / "controller.log", "ab")  # noqa: SIM115 - closed with the process
    fleet.controller = subprocess.Popen(
        [sys.executable, "-m", "gamekeeper", "serve", "--metrics-addr", f"127.0.0.1:{port}"],
        env=fleet.env, stdout=log, stderr=log, start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return bool(urllib.request.urlopen(base + "/readyz", timeout=2).status == 200)
        except OSError:
            return False

    wait_for(up, "readyz", 30)
    fleet.apply_yaml(seed_yaml("demo-gs.yaml"))
    fleet.wait_gs("three None", lambda g: len(g) == 3 and all(ops(x) == "None" and state(x) == "Ready"
                                                               for x in g.values()))
    fleet.gk("exec", "demo-gs-0", "--", "./fault.sh")
    fleet.wait_gs("Maintaining", lambda g: ops(g["demo-gs-0"]) == "Maintaining")

    def scrape() -> str:
        return str(urllib.request.urlopen(base + "/metrics", timeout=5).read().decode())

    def settled() -> bool:
        text = scrape()
        return (value(text, "okg_gameservers_opsState_count", opsState="Maintaining", gssName="demo-gs",
                      namespace="default") == 1
                and value(text, "okg_gameserversets_replicas_count", gssName="demo-gs", gssNs="default",
                          gsStatus="maintaining") == 1)

    wait_for(settled, "metrics to show the Maintaining server", 30)
    text = scrape()
    assert value(text, "okg_gameservers_opsState_count", opsState="None", gssName="demo-gs", namespace="default") == 2
    assert value(text, "okg_gameservers_state_count", state="Ready") == 3
    assert value(text, "okg_gameserversets_replicas_count", gssName="demo-gs", gssNs="default",
                 gsStatus="current") == 3
    assert value(text, "okg_gameservers_total") == 3
    assert (value(text, "gamekeeper_probe_outcomes_total", gssName="demo-gs", quality="healthy", result="success")
            or 0) >= 1
    assert value(text, "gamekeeper_probe_condition_writes_total") is not None
    assert (value(text, "gamekeeper_probe_duration_seconds_count", gssName="demo-gs", quality="healthy") or 0) >= 1
    assert value(text, "gamekeeper_reconcile_queue_depth", queue="gameserver") is not None
    assert (value(text, "gamekeeper_reconcile_duration_seconds_count", controller="gameserver") or 0) > 0
