"""KEDA + HPA behaviour for one external trigger (core/hpa.py): windows, policies, min/max, cooldown."""

from __future__ import annotations

from gamekeeper.core.hpa import (
    Behavior,
    HpaState,
    KedaSpec,
    Policy,
    Rules,
    behavior_from_spec,
    hpa_desired,
    hpa_record,
    hpa_restore,
    keda_desired,
)

OKG_DOC = behavior_from_spec({"scaleDown": {"stabilizationWindowSeconds": 45,
                                            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]}})


def test_defaults_filled_per_direction() -> None:
    assert behavior_from_spec(None) == Behavior()
    assert OKG_DOC.scale_down.stabilization_window_seconds == 45
    assert OKG_DOC.scale_up == Behavior().scale_up
    only_window = behavior_from_spec({"scaleDown": {"stabilizationWindowSeconds": 10}})
    assert only_window.scale_down.policies == Behavior().scale_down.policies


def test_scale_down_waits_for_the_stabilization_window() -> None:
    state = HpaState()
    assert hpa_desired(0, 3, 3, 1, 10, OKG_DOC, state) == (3, "scaler's answer")
    desired, why = hpa_desired(10, 3, 1, 1, 10, OKG_DOC, state)
    assert desired == 3 and "stabilization window" in why
    assert hpa_desired(30, 3, 1, 1, 10, OKG_DOC, state)[0] == 3
    # The recommendation of 3 (t=0) leaves the 45 s window after t=45.
    assert hpa_desired(46, 3, 1, 1, 10, OKG_DOC, state)[0] == 1


def test_scale_up_is_immediate_by_default_but_rate_limited() -> None:
    state = HpaState()
    # Default scale-up: max(100% of 2 -> 4, 2 + 4 pods -> 6) = 6 per 15 s.
    desired, why = hpa_desired(0, 2, 20, 1, 100, Behavior(), state)
    assert desired == 6 and "scaleUp policies" in why
    # Within the same 15 s period the limit counts from the period's start (2): still 6.
    assert hpa_desired(5, 6, 20, 1, 100, Behavior(), state)[0] == 6
    assert hpa_desired(16, 6, 20, 1, 100, Behavior(), state)[0] == 12


def test_pods_policy_and_select_min() -> None:
    down = Rules(0, "Min", (Policy("Pods", 1, 60), Policy("Percent", 50, 60)))
    behavior = Behavior(scale_down=down)
    state = HpaState()
    # Min picks the smallest change: Pods 1 (10 -> 9) rather than Percent 50 (10 -> 5).
    assert hpa_desired(0, 10, 2, 1, 100, behavior, state)[0] == 9
    assert hpa_desired(30, 9, 2, 1, 100, behavior, state)[0] == 9  # 1 pod already removed in this 60 s period
    assert hpa_desired(61, 9, 2, 1, 100, behavior, state)[0] == 8


def test_disabled_direction_never_moves() -> None:
    behavior = Behavior(scale_down=Rules(0, "Disabled", (Policy("Percent", 100, 15),)))
    assert hpa_desired(0, 5, 1, 1, 10, behavior, HpaState())[0] == 5


def test_min_and_max_replica_count() -> None:
    no_window = behavior_from_spec({"scaleDown": {"stabilizationWindowSeconds": 0}})
    assert hpa_desired(0, 5, 50, 1, 8, no_window, HpaState())[0] == 8
    desired, why = hpa_desired(0, 5, 0, 2, 8, no_window, HpaState())
    assert desired == 2 and "minReplicaCount" in why
    assert hpa_desired(0, 12, 12, 1, 8, no_window, HpaState()) == (8, "current replicas above maxReplicaCount 8")


def test_keda_zero_and_cooldown() -> None:
    spec = KedaSpec(min_replicas=0, max_replicas=10, cooldown_period=300, behavior=OKG_DOC)
    state = HpaState()
    assert keda_desired(0, 0, 0, False, 0, spec, state) == (0, "scaler is not active")
    assert keda_desired(0, 0, 3, True, 0, spec, state)[0] == 1
    # Inactive, but not for cooldownPeriod yet: the HPA keeps at least 1.
    assert keda_desired(100, 2, 0, False, 0, spec, HpaState())[0] >= 1
    assert keda_desired(301, 2, 0, False, 0, spec, state)[0] == 0
    with_floor = KedaSpec(min_replicas=1, max_replicas=10, cooldown_period=0, behavior=OKG_DOC)
    assert keda_desired(301, 2, 0, False, 0, with_floor, HpaState()) == (1, "floored at minReplicaCount 1")


def test_the_record_restored_at_the_last_poll_decides_as_the_state_it_was_made_from() -> None:
    """hpa_record keeps only the latest time of each run of equal recommendations: nothing a decision reads."""
    import json
    import random

    rng = random.Random(7)
    behavior = behavior_from_spec({"scaleUp": {"stabilizationWindowSeconds": 20},
                                   "scaleDown": {"stabilizationWindowSeconds": 45}})
    for _ in range(300):  # enough fleets that runs of one value cross a window's edge
        state, now, current = HpaState(), 0.0, 5
        for _ in range(rng.randint(1, 30)):
            now += rng.choice([5, 15])
            current = hpa_desired(now, current, rng.choice([2, 3, 3, 8]), 1, 10, behavior, state)[0]
        restored = hpa_restore(json.loads(json.dumps(hpa_record(state))), now)  # through a JSON status
        for _ in range(10):
            now += rng.choice([5, 15])
            recommended = rng.choice([1, 3, 9])
            answer = hpa_desired(now, current, recommended, 1, 10, behavior, state)
            assert hpa_desired(now, current, recommended, 1, 10, behavior, restored) == answer
            current = answer[0]


def test_a_record_that_repeats_the_same_recommendation_does_not_change() -> None:
    state = HpaState()
    hpa_desired(0, 3, 3, 1, 10, OKG_DOC, state)
    first = hpa_record(state)
    for t in (5, 10, 15):
        hpa_desired(t, 3, 3, 1, 10, OKG_DOC, state)
    assert hpa_record(state) == first == {"recommendations": [], "recommending": 3}
    assert hpa_restore({"recommendations": "junk"}, 20) == HpaState()
