"""Bad recovery specs are refused by `gk apply` with the field path, and nothing is written; OKG YAML without
the recovery fields applies unchanged."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from gamekeeper.api.loading import InvalidObject, load_documents
from tests.fleet import EXAMPLES, Fleet

BASE: dict[str, Any] = yaml.safe_load((EXAMPLES / "demo-gs-recovery.yaml").read_text())
ACTION = "spec.serviceQualities[0].serviceQualityAction[1]"


def _recovery(doc: dict[str, Any]) -> dict[str, Any]:
    recovery: dict[str, Any] = doc["spec"]["serviceQualities"][0]["serviceQualityAction"][1]["recovery"]
    return recovery


def _policy(doc: dict[str, Any]) -> dict[str, Any]:
    policy: dict[str, Any] = doc["spec"]["recoveryPolicy"]
    return policy


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("unknown-container", lambda d: _recovery(d)["steps"][1].update(container="sidecar"),
     "spec: serviceQualities[0].serviceQualityAction[1].recovery.steps[1].container: 'sidecar' is not a container "
     "of gameServerTemplate (containers: minecraft)"),
    ("negative-attempts", lambda d: _recovery(d).update(attempts=-1),
     f"{ACTION}.recovery.attempts: must be >= 0, got -1"),
    ("negative-backoff", lambda d: _recovery(d).update(backoffSeconds=-5),
     f"{ACTION}.recovery.backoffSeconds: must be >= 0, got -5"),
    ("string-attempts", lambda d: _recovery(d).update(attempts="3"),
     f'{ACTION}.recovery.attempts: expected an integer, got "3"'),
    ("max-in-flight-over-100", lambda d: _policy(d).update(maxInFlight="150%"),
     "spec.recoveryPolicy.maxInFlight: '150%' is over 100%"),
    ("max-unhealthy-over-100", lambda d: _policy(d).update(maxUnhealthy="101%"),
     "spec.recoveryPolicy.maxUnhealthy: '101%' is over 100%"),
    ("max-unhealthy-not-a-percentage", lambda d: _policy(d).update(maxUnhealthy="half"),
     "spec.recoveryPolicy.maxUnhealthy: expected an integer or a percentage like '25%', got 'half'"),
    ("negative-max-per-hour", lambda d: _policy(d).update(maxPerHour=-1),
     "spec.recoveryPolicy.maxPerHour: must be >= 0, got -1"),
    ("exec-without-command", lambda d: _recovery(d)["steps"][0].pop("command"),
     f"{ACTION}.recovery.steps[0]: command: required for kind exec"),
    ("unknown-kind", lambda d: _recovery(d)["steps"][0].update(kind="reboot"),
     f"{ACTION}.recovery.steps[0].kind: expected one of 'exec', 'restartContainer' or 'recreatePod', got \"reboot\""),
    ("no-steps", lambda d: _recovery(d).update(steps=[]),
     f"{ACTION}.recovery.steps: must have at least 1 item(s)"),
    ("escalation-typo", lambda d: _recovery(d)["onExhausted"].update(opsState="maintaining"),
     f"{ACTION}.recovery.onExhausted.opsState: 'maintaining' is not a known opsState; did you mean 'Maintaining'?"),
    ("unknown-policy-field", lambda d: _policy(d).update(maxInflight=1),
     "spec.recoveryPolicy.maxInflight: unknown field"),
]


def stored_sets(fleet: Fleet) -> list[str]:
    data = json.loads(fleet.gk("get", "gss", "-o", "json").stdout)
    return [o["metadata"]["name"] for o in data["items"]]


def _bad(mutate: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    mutate(doc)
    return doc


@pytest.mark.parametrize(("mutate", "expected"), [pytest.param(m, e, id=i) for i, m, e in CASES])
def test_bad_recovery_spec_names_the_field(mutate: Callable[[dict[str, Any]], None], expected: str) -> None:
    with pytest.raises(InvalidObject) as err:
        load_documents(yaml.safe_dump(_bad(mutate), sort_keys=False), "bad.yaml")
    assert [p for p in err.value.problems if expected in p], err.value.problems
    assert len(err.value.problems) == 1, err.value.problems


def test_gk_apply_refuses_every_bad_recovery_spec_and_writes_nothing(fleet: Fleet) -> None:
    """All the cases above in one file: `gk apply` names each problem by document and field, applies nothing."""
    path = fleet.tmp / "bad.yaml"
    path.write_text(yaml.safe_dump_all([BASE] + [_bad(m) for _, m, _ in CASES], sort_keys=False))
    proc = fleet.gk("apply", "-f", str(path), check=False)
    assert proc.returncode != 0
    for i, (_, _, expected) in enumerate(CASES):
        assert f"(document {i + 2}): {expected}" in proc.stderr, proc.stderr
    assert "(document 1)" not in proc.stderr  # the good one is fine, and not applied either
    assert "nothing was applied" in proc.stderr
    assert stored_sets(fleet) == []


def test_good_recovery_spec_and_plain_okg_yaml_apply(fleet: Fleet) -> None:
    fleet.gk("apply", "-f", str(EXAMPLES / "demo-gs-recovery.yaml"))
    stored = json.loads(fleet.gk("get", "gss", "demo-gs", "-o", "json").stdout)
    assert stored["spec"]["recoveryPolicy"]["maxUnhealthy"] == "50%"
    assert _recovery(stored)["steps"][0] == {"kind": "exec", "command": ["./recover.sh"], "timeoutSeconds": 10}
    fleet.gk("delete", "gss", "demo-gs")
    fleet.gk("apply", "-f", str(EXAMPLES / "demo-gs.yaml"))
    plain = json.loads(fleet.gk("get", "gss", "demo-gs", "-o", "json").stdout)
    assert "recoveryPolicy" not in plain["spec"]
    assert all("recovery" not in a for a in plain["spec"]["serviceQualities"][0]["serviceQualityAction"])


def test_demo_names_the_recovery_scenario(fleet: Fleet) -> None:
    proc = fleet.gk("demo", "nope", check=False)
    assert proc.returncode == 2 and "use idle, healthy or recovery" in proc.stderr
