"""Rolling-update decisions (gamekeeper.core.update): Kruise's ordering, maxUnavailable, partition, policies."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gamekeeper.api.models import GS_UPDATE_PRIORITY_KEY, LIFECYCLE_STATE_KEY
from gamekeeper.api.times import format_time
from gamekeeper.core.update import (
    INPLACE_STATE_KEY,
    PodView,
    UpdateStrategy,
    creation_containers,
    in_place_containers,
    in_place_state,
    in_place_update_completed,
    int_from_string_suffix,
    is_current_revision_needed,
    parse_update_strategy,
    plan_rolling_update,
    pod_available,
    pod_ready,
    priority_key,
    resolve_max_unavailable,
    revision_name,
    rollout_status,
    sort_pods_to_update,
    synced_container_images,
    template_diff,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NEW = "gs-new"
OLD = "gs-old"


def view(ordinal: int, revision: str = OLD, available: bool = True, priority: str | None = "0",
         terminating: bool = False, in_place: bool = False) -> PodView:
    return PodView(name=f"gs-{ordinal}", ordinal=ordinal, revision=revision, available=available,
                   terminating=terminating, priority=priority_key({} if priority is None else
                                                                 {GS_UPDATE_PRIORITY_KEY: priority}),
                   in_place_possible=in_place)


def rolling(**kw: Any) -> UpdateStrategy:
    return parse_update_strategy({"rollingUpdate": kw})


def names(pods: list[PodView]) -> list[str]:
    return [p.name for p in pods]


# --- parsing and small helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("10", 10), ("-5", 5), ("+7", 7), ("v2", 2), ("abc", 0), ("", 0), ("1a", 0), ("007", 7),
    ("9223372036854775807", 2**63 - 1), ("9223372036854775808", 0), ("٣", 0),
])
def test_int_from_string_suffix_is_kruises(text: str, expected: int) -> None:
    assert int_from_string_suffix(text) == expected


def test_priority_key_without_the_label_is_level_minus_one() -> None:
    assert priority_key({}) == (-1, 0)
    assert priority_key(None) == (-1, 0)
    assert priority_key({GS_UPDATE_PRIORITY_KEY: "12"}) == (0, 12)
    assert priority_key({GS_UPDATE_PRIORITY_KEY: ""}) == (0, 0)


@pytest.mark.parametrize(("value", "replicas", "expected"), [
    (1, 10, 1), (3, 10, 3), (0, 10, 1), (-2, 10, 1),
    ("50%", 5, 2), ("100%", 4, 4), ("10%", 4, 1), ("0%", 4, 1), ("25%", 8, 2), ("33%", 10, 3), ("100%", 0, 1),
])
def test_max_unavailable_rounds_down_and_is_at_least_one(value: int | str, replicas: int, expected: int) -> None:
    assert resolve_max_unavailable(value, replicas) == expected


@pytest.mark.parametrize("value", ["5", "abc", "%", "5.5%", " 5%", True])
def test_max_unavailable_malformed_is_an_error(value: Any) -> None:
    with pytest.raises(ValueError):
        resolve_max_unavailable(value, 10)


def test_strategy_defaults_follow_kruise() -> None:
    default = parse_update_strategy(None)
    assert default == UpdateStrategy()
    assert (default.type, default.prioritized, default.max_unavailable, default.pod_update_policy) == (
        "RollingUpdate", False, 1, "ReCreate")
    assert parse_update_strategy({"type": "OnDelete"}).type == "OnDelete"
    # rollingUpdate given: OKG forces RollingUpdate and orders by update priority.
    given = parse_update_strategy({"type": "OnDelete", "rollingUpdate": {"partition": 2, "maxUnavailable": "50%",
                                                                         "podUpdatePolicy": "InPlaceOnly",
                                                                         "paused": True, "minReadySeconds": 3}})
    assert given == UpdateStrategy("RollingUpdate", True, 2, "50%", "InPlaceOnly", True, 3)
    assert given.in_place and not rolling().in_place
    assert rolling(podUpdatePolicy="InPlaceIfPossible").in_place


def test_revision_name_depends_on_the_template_only_not_on_key_order() -> None:
    a = {"spec": {"containers": [{"name": "main", "image": "x:1"}]}, "metadata": {}}
    b = {"metadata": {}, "spec": {"containers": [{"image": "x:1", "name": "main"}]}}
    assert revision_name("gs", a) == revision_name("gs", b)
    assert revision_name("gs", a).startswith("gs-") and len(revision_name("gs", a)) == 13
    assert revision_name("gs", a) != revision_name("gs", {**a, "spec": {"containers": [{"name": "main"}]}})


# --- order -----------------------------------------------------------------------------------------------------


def test_order_higher_priority_first_then_higher_ordinal() -> None:
    pods = [view(0, priority="10"), view(1), view(2), view(3, priority="5"), view(4)]
    assert names(sort_pods_to_update(pods, NEW, 5, rolling())) == ["gs-0", "gs-3", "gs-4", "gs-2", "gs-1"]


def test_order_puts_pods_without_the_label_first_as_kruise_does() -> None:
    pods = [view(0, priority="100"), view(1, priority=None), view(2)]
    assert names(sort_pods_to_update(pods, NEW, 3, rolling())) == ["gs-1", "gs-0", "gs-2"]


def test_order_reads_trailing_digits_of_the_priority() -> None:
    pods = [view(0, priority="-9"), view(1, priority="p3"), view(2, priority="x")]
    assert names(sort_pods_to_update(pods, NEW, 3, rolling())) == ["gs-0", "gs-1", "gs-2"]


def test_order_puts_updated_and_terminating_pods_first_and_cuts_at_replicas_minus_partition() -> None:
    pods = [view(0, priority="9"), view(1, revision=NEW), view(2, terminating=True), view(3)]
    # updated/terminating first (descending ordinal), then the rest by priority; partition 1 leaves one out.
    assert names(sort_pods_to_update(pods, NEW, 4, rolling(partition=1))) == ["gs-2", "gs-1", "gs-0"]
    assert sort_pods_to_update(pods, NEW, 4, rolling(partition=4)) == []
    assert sort_pods_to_update(pods, NEW, 4, rolling(partition=9)) == []


def test_without_rolling_update_the_order_is_by_descending_ordinal_ignoring_priority() -> None:
    pods = [view(0, priority="99"), view(1), view(2)]
    assert names(sort_pods_to_update(pods, NEW, 3, parse_update_strategy(None))) == ["gs-2", "gs-1", "gs-0"]


# --- the plan --------------------------------------------------------------------------------------------------


def planned(plan: Any) -> list[tuple[str, bool]]:
    return [(u.pod.name, u.in_place) for u in plan.updates]


def test_plan_takes_at_most_max_unavailable_available_pods() -> None:
    pods = [view(i) for i in range(5)]
    plan = plan_rolling_update(pods, NEW, 5, rolling(maxUnavailable=2))
    assert planned(plan) == [("gs-4", False), ("gs-3", False)]
    assert plan.max_unavailable == 2


def test_plan_counts_unavailable_pods_against_the_limit() -> None:
    # gs-0 (already updated) is not ready: one slot is taken, so only one more pod goes.
    pods = [view(0, revision=NEW, available=False), view(1), view(2), view(3)]
    assert planned(plan_rolling_update(pods, NEW, 4, rolling(maxUnavailable=2))) == [("gs-3", False)]
    # Terminating pods count too.
    pods = [view(0, revision=NEW, terminating=True, available=False), view(1), view(2)]
    assert planned(plan_rolling_update(pods, NEW, 3, rolling(maxUnavailable=1))) == []


def test_plan_updates_unavailable_old_pods_even_at_the_limit() -> None:
    # Updating a pod that is down anyway makes nothing worse (Kruise: "!unavailablePods.Has(target)").
    pods = [view(0, available=False), view(1, available=False), view(2)]
    plan = plan_rolling_update(pods, NEW, 3, rolling(maxUnavailable=1, **{}))
    assert planned(plan) == []  # gs-2 comes first in the order, is available, and the limit is reached
    pods = [view(0), view(1, available=False, priority="5"), view(2, available=False, priority="5")]
    plan = plan_rolling_update(pods, NEW, 3, rolling(maxUnavailable=1))
    assert planned(plan) == [("gs-2", False), ("gs-1", False)]


def test_plan_stops_at_the_first_blocked_pod() -> None:
    # A lower-priority pod that is down does not overtake a higher-priority one that must wait.
    # gs-1 (updated) and gs-2 (old) are down: the limit of 2 is reached, gs-0 (priority 9) must wait, and gs-2,
    # although updating it would cost nothing, does not go before it.
    pods = [view(0, priority="9"), view(1, revision=NEW, available=False), view(2, available=False, priority="1")]
    plan = plan_rolling_update(pods, NEW, 3, rolling(maxUnavailable=2))
    assert planned(plan) == []
    assert "waiting before gs-0" in plan.note
    pods = [view(0), view(1, available=False, priority="5"), view(2, available=False, priority="3")]
    plan = plan_rolling_update(pods, NEW, 3, rolling(maxUnavailable=2))
    assert planned(plan) == [("gs-1", False), ("gs-2", False)]  # gs-0 would be a third unavailable pod
    assert "waiting before gs-0" in plan.note


def test_plan_leaves_partition_pods_on_the_old_revision() -> None:
    pods = [view(i) for i in range(4)]
    plan = plan_rolling_update(pods, NEW, 4, rolling(maxUnavailable="100%", partition=1))
    assert planned(plan) == [("gs-3", False), ("gs-2", False), ("gs-1", False)]
    # Already updated pods use up the quota first: nothing more to do.
    pods = [view(0), view(1, revision=NEW), view(2, revision=NEW), view(3, revision=NEW)]
    assert planned(plan_rolling_update(pods, NEW, 4, rolling(maxUnavailable="100%", partition=1))) == []


def test_plan_does_nothing_when_paused_or_on_delete() -> None:
    pods = [view(0), view(1)]
    assert plan_rolling_update(pods, NEW, 2, rolling(paused=True)).updates == ()
    assert plan_rolling_update(pods, NEW, 2, parse_update_strategy({"type": "OnDelete"})).updates == ()


def test_plan_in_place_if_possible_and_in_place_only() -> None:
    pods = [view(0, in_place=True), view(1, in_place=False), view(2, in_place=True)]
    plan = plan_rolling_update(pods, NEW, 3, rolling(maxUnavailable=3, podUpdatePolicy="InPlaceIfPossible"))
    assert planned(plan) == [("gs-2", True), ("gs-1", False), ("gs-0", True)]
    plan = plan_rolling_update(pods, NEW, 3, rolling(maxUnavailable=3, podUpdatePolicy="InPlaceOnly"))
    assert planned(plan) == [("gs-2", True)]
    assert plan.refused is not None and plan.refused.name == "gs-1"
    plan = plan_rolling_update(pods, NEW, 3, rolling(maxUnavailable=3))  # ReCreate never goes in place
    assert planned(plan) == [("gs-2", False), ("gs-1", False), ("gs-0", False)]


def test_plan_rejects_a_malformed_max_unavailable() -> None:
    with pytest.raises(ValueError):
        plan_rolling_update([view(0)], NEW, 1, rolling(maxUnavailable="two"))


def test_plan_properties_on_random_fleets() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        replicas = rng.randint(0, 8)
        pods = [
            view(i, revision=rng.choice([OLD, NEW, "gs-older"]), available=rng.random() < 0.7,
                 priority=rng.choice([None, "0", "3", "10", "x7"]), terminating=rng.random() < 0.1,
                 in_place=rng.random() < 0.5)
            for i in range(replicas)
        ]
        strategy = rolling(maxUnavailable=rng.choice([1, 2, 3, "50%", "100%"]), partition=rng.randint(0, 4),
                           podUpdatePolicy=rng.choice(["ReCreate", "InPlaceIfPossible", "InPlaceOnly"]))
        plan = plan_rolling_update(pods, NEW, replicas, strategy)
        chosen = [u.pod for u in plan.updates]
        limit = resolve_max_unavailable(strategy.max_unavailable, replicas)
        before = {p.name for p in pods if p.terminating or not p.available}
        after = before | {p.name for p in chosen}
        assert len(after) <= max(limit, len(before)), "never more unavailable than allowed (or than already were)"
        assert all(p.revision != NEW and not p.terminating for p in chosen)
        done = sum(1 for p in pods if p.revision == NEW or p.terminating)
        assert len(chosen) <= max(0, replicas - strategy.partition - done) or not chosen
        assert all(u.in_place == (strategy.in_place and u.pod.in_place_possible) for u in plan.updates)
        if strategy.pod_update_policy == "InPlaceOnly":
            assert all(u.in_place for u in plan.updates)
        assert len({p.name for p in chosen}) == len(chosen)


def test_recreated_pod_keeps_the_old_revision_while_the_partition_needs_it() -> None:
    strategy = rolling(partition=2)
    others = [view(0), view(1, revision=NEW), view(2, revision=NEW)]
    assert is_current_revision_needed(strategy, NEW, 3, others)  # only one other old pod, partition wants two
    others = [view(0), view(1), view(2, revision=NEW)]
    assert not is_current_revision_needed(strategy, NEW, 3, others)
    assert not is_current_revision_needed(rolling(), NEW, 0, [])
    assert not is_current_revision_needed(parse_update_strategy(None), NEW, 0, [view(1)])
    # The pod's own (old) record does not count.
    assert is_current_revision_needed(rolling(partition=1), NEW, 0, [view(0), view(1, revision=NEW)])


# --- template differences --------------------------------------------------------------------------------------


def template(image: str = "game:1", **container: Any) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "game"}, "annotations": {"note": "a"}},
        "spec": {"terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "main", "image": image, **container}, {"name": "side", "image": "s:1"}]},
    }


def test_image_only_change_is_in_place() -> None:
    diff = template_diff(template(), template("game:2"))
    assert diff.in_place_possible and dict(diff.images) == {"main": "game:2"}
    assert not diff.labels and not diff.annotations
    assert template_diff(template(), template()).in_place_possible


def test_metadata_change_is_in_place_and_lists_removals() -> None:
    new = template()
    new["metadata"] = {"labels": {"app": "game", "tier": "1"}, "annotations": {}}
    diff = template_diff(template(), new)
    assert diff.in_place_possible and not diff.images
    assert dict(diff.labels) == {"tier": "1"} and dict(diff.annotations) == {"note": None}


@pytest.mark.parametrize(("change", "expected"), [
    (lambda t: t["spec"]["containers"][0].update(command=["x"]), "spec.containers[main].command"),
    (lambda t: t["spec"]["containers"][0].update(env=[{"name": "A", "value": "1"}]), "spec.containers[main].env"),
    (lambda t: t["spec"].update(terminationGracePeriodSeconds=5), "spec.terminationGracePeriodSeconds"),
    (lambda t: t["spec"]["containers"].append({"name": "third", "image": "t:1"}), "spec.containers (added"),
    (lambda t: t["spec"]["containers"].reverse(), "spec.containers (added"),
])
def test_other_changes_are_not_in_place(change: Any, expected: str) -> None:
    new = template("game:2")
    change(new)
    diff = template_diff(template(), new)
    assert not diff.in_place_possible
    assert any(item.startswith(expected) for item in diff.other), diff.other


# --- GameServer container overrides ----------------------------------------------------------------------------


def test_creation_applies_the_game_server_image_and_cpu_memory_only() -> None:
    containers = [{"name": "main", "image": "game:1", "resources": {"limits": {"cpu": "1"}}}, {"name": "side"}]
    gs = [{"name": "main", "image": "game:9", "resources": {"requests": {"memory": "1Gi", "gpu": "1"},
                                                            "limits": {"cpu": "2"}}},
          {"name": "ghost", "image": "x"}]
    out = creation_containers(containers, gs)
    assert out[0] == {"name": "main", "image": "game:9",
                      "resources": {"limits": {"cpu": "2"}, "requests": {"memory": "1Gi"}}}
    assert out[1] == {"name": "side"}
    assert creation_containers(containers, None) == containers
    assert containers[0]["image"] == "game:1"  # not mutated


def test_live_sync_writes_only_differing_images() -> None:
    pod = [{"name": "main", "image": "game:1"}, {"name": "side", "image": "s:1"}]
    assert synced_container_images(pod, None) is None
    assert synced_container_images(pod, [{"name": "main", "image": "game:1"}]) is None
    assert synced_container_images(pod, [{"name": "main"}, {"name": "side", "image": ""}]) is None
    out = synced_container_images(pod, [{"name": "side", "image": "s:2"}])
    assert out == [{"name": "main", "image": "game:1"}, {"name": "side", "image": "s:2"}]


def test_in_place_containers_keep_the_game_server_override() -> None:
    pod = [{"name": "main", "image": "game:1"}, {"name": "side", "image": "s:1"}]
    out, changed = in_place_containers(pod, {"main": "game:2"}, None)
    assert changed == ["main"] and out[0]["image"] == "game:2" and out[1] == pod[1]
    out, changed = in_place_containers(pod, {"main": "game:2"}, [{"name": "main", "image": "game:1"}])
    assert changed == [] and out == pod
    out, changed = in_place_containers(pod, {"side": "s:2"}, [{"name": "main", "image": "game:7"}])
    assert changed == ["side"] and out[0]["image"] == "game:1"  # only the containers the template changed


# --- in-place progress and availability ------------------------------------------------------------------------


def pod(ready: bool = True, lifecycle: str | None = None, since: datetime = NOW - timedelta(hours=1),
        statuses: list[dict[str, Any]] | None = None, annotations: dict[str, str] | None = None,
        images: tuple[str, ...] = ("game:2",), deleting: bool = False) -> dict[str, Any]:
    labels = {LIFECYCLE_STATE_KEY: lifecycle} if lifecycle else {}
    meta: dict[str, Any] = {"name": "gs-0", "labels": labels, "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = format_time(NOW)
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": f"c{i}", "image": img} for i, img in enumerate(images)]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            "lastTransitionTime": format_time(since)}],
            "containerStatuses": statuses or [],
        },
    }


def running(name: str, image: str, cid: str) -> dict[str, Any]:
    return {"name": name, "image": image, "containerID": cid, "state": {"running": {"startedAt": "x"}}}


def test_in_place_update_completes_when_changed_containers_run_anew_with_the_new_image() -> None:
    record = {INPLACE_STATE_KEY: in_place_state(NEW, NOW, {"c0": "local://1-1"})}
    assert json.loads(record[INPLACE_STATE_KEY])["lastContainerIDs"] == {"c0": "local://1-1"}
    images = ("game:2", "s:1")
    same = [running("c0", "game:1", "local://1-1"), running("c1", "s:1", "local://2-2")]
    assert not in_place_update_completed(pod(statuses=same, annotations=record, images=images))
    new_image_same_id = [running("c0", "game:2", "local://1-1"), running("c1", "s:1", "local://2-2")]
    assert not in_place_update_completed(pod(statuses=new_image_same_id, annotations=record, images=images))
    waiting = [{"name": "c0", "image": "game:2", "state": {"waiting": {"reason": "ContainerCreating"}}}]
    assert not in_place_update_completed(pod(statuses=waiting, annotations=record, images=images))
    done = [running("c0", "game:2", "local://3-3"), running("c1", "s:1", "local://2-2")]
    assert in_place_update_completed(pod(statuses=done, annotations=record, images=images))
    # Nothing recorded: every container must run what the spec says.
    assert in_place_update_completed(pod(statuses=done, images=images))
    assert not in_place_update_completed(pod(statuses=same, images=images))
    # Only metadata changed: nothing to wait for.
    empty = {INPLACE_STATE_KEY: in_place_state(NEW, NOW, {})}
    assert in_place_update_completed(pod(statuses=same, annotations=empty, images=images))


def test_ready_and_available() -> None:
    assert pod_ready(pod()) and not pod_ready(pod(ready=False))
    assert not pod_ready(pod(lifecycle="Updating"))  # the InPlaceUpdateReady gate
    assert pod_ready(pod(lifecycle="PreparingUpdate")) and pod_ready(pod(lifecycle="Normal"))
    assert pod_available(pod(), 0, NOW) == (True, 0.0)
    assert pod_available(pod(lifecycle="PreparingUpdate"), 0, NOW)[0] is False
    assert pod_available(pod(deleting=True), 0, NOW)[0] is False
    assert pod_available(pod(ready=False), 0, NOW)[0] is False
    assert pod_available(pod(since=NOW - timedelta(seconds=3)), 10, NOW) == (False, 7.0)
    assert pod_available(pod(since=NOW - timedelta(seconds=30)), 10, NOW) == (True, 0.0)


# --- rollout status --------------------------------------------------------------------------------------------


def test_rollout_status_messages() -> None:
    def status(strategy: UpdateStrategy, observed: bool = True, **kw: int) -> Any:
        return rollout_status('gameserverset "g"', 4, strategy,
                              {"updateRevision": "g-abc", "readyReplicas": 4, **kw}, observed)

    s = status(rolling(), observed=False, updatedReplicas=4, updatedReadyReplicas=4)
    assert not s.done and "spec update to be observed" in s.message
    s = status(rolling(), updatedReplicas=1, updatedReadyReplicas=1)
    assert not s.done and s.message == ("Waiting for rollout to finish: 1 out of 4 new game servers have been "
                                        "updated...")
    s = status(rolling(paused=True), updatedReplicas=1)
    assert not s.done and s.message.endswith("(paused)") and s.paused
    s = status(rolling(), updatedReplicas=4, updatedReadyReplicas=3)
    assert not s.done and "3 of 4 updated game servers are ready" in s.message
    s = status(rolling(), updatedReplicas=4, updatedReadyReplicas=4)
    assert s.done and s.message == 'gameserverset "g" rolling update complete 4 game servers at revision g-abc'
    s = status(rolling(partition=1), updatedReplicas=3, updatedReadyReplicas=3)
    assert s.done and s.target == 3 and s.message.startswith("partitioned roll out complete: 3 new game servers")
    s = status(rolling(partition=9), updatedReplicas=0, updatedReadyReplicas=0)
    assert s.done and s.target == 0
    assert status(parse_update_strategy({"type": "OnDelete"})).done
