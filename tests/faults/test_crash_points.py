"""The real controller (`gk serve` on a temporary state directory) SIGKILLed at seeded random points.

Each scenario runs `iterations` rounds on one fleet; each round makes a change, kills the controller at a
random moment while it carries the change out (sometimes twice), restarts it, waits for convergence and checks
the invariants: at every instant (the Observer) no duplicate game process, no protected server deleted and
maxUnavailable held; once settled, replicas honoured, one game process per container whose supervisor is the
recorded container, no orphan process of a deleted pod, and `gk get` naming exactly what runs.
"""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from gamekeeper.store.sqlite import SqliteState
from tests.faults.harness import (
    Crasher,
    Observer,
    census,
    cli_agrees,
    expected_survivors,
    game_servers_of,
    games_by_pod,
    gss_doc,
    kill_pid,
    labels,
    ordinal,
    pods_of,
    settle,
    wait_until,
)
from tests.faults.settings import SHORT_ITERATIONS, FaultConfig, fault_settings
from tests.fleet import Fleet

pytestmark = [pytest.mark.faults, pytest.mark.slow]

OPS = ["WaitToBeDeleted", "None", "Allocated", "Maintaining"]


def apply(fleet: Fleet, doc: dict[str, Any]) -> None:
    fleet.apply_yaml(doc)


def check(observer: Observer, fleet: Fleet, gss: str, tag: str) -> None:
    violations = observer.stop()
    assert not violations, f"{tag}: {violations}\n--- log:\n{fleet.log()[-3000:]}"
    disagreements = cli_agrees(fleet, gss)
    assert not disagreements, f"{tag}: {disagreements}"


def set_ops_states(fleet: Fleet, state: SqliteState, gss: str, wanted: dict[str, tuple[str, int]]) -> None:
    for name, (ops, priority) in wanted.items():
        fleet.gk("patch", "gs", name, "--type", "merge", "-p",
                 json.dumps({"spec": {"opsState": ops, "deletionPriority": priority}}))

    def synced() -> bool:
        pods = pods_of(state, gss)
        return all(labels(pods[n]).get("game.kruise.io/gs-opsState") == ops
                   and labels(pods[n]).get("game.kruise.io/gs-delete-priority") == str(prio)
                   for n, (ops, prio) in wanted.items() if n in pods)

    wait_until(synced, "opsStates and priorities on the pods", 30, fleet)


def test_scale_in(fleet: Fleet, state: SqliteState, faults: FaultConfig) -> None:
    rng, crasher = faults.rng("scale-in"), Crasher(fleet, faults.rng("scale-in/kills"), "scale-in")
    apply(fleet, gss_doc("si", 6))
    settle(fleet, state, "si", 6, faults.tag("scale-in"))
    for i in range(faults.iterations):
        tag = faults.tag("scale-in", i)
        names = sorted(pods_of(state, "si"), key=ordinal)
        wanted = {n: (rng.choice(OPS), rng.choice([0, 0, 1, 2])) for n in names}
        set_ops_states(fleet, state, "si", wanted)
        keep = rng.randint(1, len(names) - 1)
        pods = pods_of(state, "si")
        survivors = expected_survivors(pods, keep)
        observer = Observer(fleet.state_dir, "si", protected={n: pods[n]["metadata"]["uid"] for n in survivors})
        observer.start()
        fleet.gk("scale", "gss", "si", "--replicas", str(keep))
        crasher.storm(2.5, f"{i}: scale 6 -> {keep}")
        crasher.restart()
        settle(fleet, state, "si", keep, tag)
        check(observer, fleet, "si", tag)
        crasher.rounds += 1
        assert set(pods_of(state, "si")) == survivors, f"{tag}: kept {sorted(pods_of(state, 'si'))}, " \
            f"want the most protected {sorted(survivors)} of {wanted}"
        if i == faults.iterations - 1:
            break
        # Back to six for the next round (the new ones start as None).
        fleet.gk("scale", "gss", "si", "--replicas", "6")
        settle(fleet, state, "si", 6, tag)
    print(f"scale-in: {crasher.crash_points} crash points: {crasher.log}")


def test_scale_out(fleet: Fleet, state: SqliteState, faults: FaultConfig) -> None:
    rng, crasher = faults.rng("scale-out"), Crasher(fleet, faults.rng("scale-out/kills"), "scale-out")
    apply(fleet, gss_doc("so", 1))
    settle(fleet, state, "so", 1, faults.tag("scale-out"))
    for i in range(faults.iterations):
        tag = faults.tag("scale-out", i)
        target = rng.randint(4, 10)
        observer = Observer(fleet.state_dir, "so")
        observer.start()
        fleet.gk("scale", "gss", "so", "--replicas", str(target))
        # The window that matters is while containers start: the first second or so.
        crasher.storm(1.5, f"{i}: scale 1 -> {target}", 1.0)
        crasher.restart()
        settle(fleet, state, "so", target, tag)
        check(observer, fleet, "so", tag)
        crasher.rounds += 1
        if i == faults.iterations - 1:
            break
        fleet.gk("scale", "gss", "so", "--replicas", "1")
        settle(fleet, state, "so", 1, tag)
    print(f"scale-out: {crasher.crash_points} crash points: {crasher.log}")


def revision_of(pod: dict[str, Any]) -> str:
    return labels(pod).get("controller-revision-hash", "")


def updated_to(state: SqliteState, gss: str, image: str) -> Any:
    def extra(pods: dict[str, dict[str, Any]]) -> list[str]:
        workload = state.get("Workload", "default", gss) or {}
        revision = (workload.get("status") or {}).get("updateRevision")
        out = []
        for name, pod in pods.items():
            if revision_of(pod) != revision:
                out.append(f"{name} at revision {revision_of(pod)}, want {revision}")
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            if not statuses or statuses[0].get("image") != image:
                out.append(f"{name} runs {statuses[0].get('image') if statuses else None}, want {image}")
            if labels(pod).get("lifecycle.apps.kruise.io/state") not in (None, "Normal"):
                out.append(f"{name} lifecycle {labels(pod).get('lifecycle.apps.kruise.io/state')}")
        return out
    return extra


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "restart_policy" not in metafunc.fixturenames:
        return
    settings = fault_settings(metafunc.config)
    policies = ["Always", "OnFailure", "Never"]
    if settings.iterations <= SHORT_ITERATIONS:
        # The short run updates in place under one restartPolicy, drawn from the seed; the long run under each.
        policies = [settings.rng("restart-policy").choice(policies)]
    metafunc.parametrize(("policy", "restart_policy"),
                         [("ReCreate", "Always"), *(("InPlaceIfPossible", p) for p in policies)])


def test_rolling_update(fleet: Fleet, state: SqliteState, faults: FaultConfig, policy: str,
                        restart_policy: str) -> None:
    scenario = f"rolling-{policy}-{restart_policy}"
    rng, crasher = faults.rng(scenario), Crasher(fleet, faults.rng(scenario + "/kills"), scenario)
    replicas = 4

    def doc(image: str, max_unavailable: int) -> dict[str, Any]:
        return gss_doc("ru", replicas, image, restart_policy=restart_policy,
                       rolling={"podUpdatePolicy": policy, "maxUnavailable": max_unavailable})

    apply(fleet, doc("game:v1", 1))
    settle(fleet, state, "ru", replicas, faults.tag(scenario))
    image = "game:v1"
    for i in range(faults.iterations):
        tag = faults.tag(scenario, i)
        image = "game:v2" if image == "game:v1" else "game:v1"
        max_unavailable = rng.randint(1, 2)
        before = {n: p["metadata"]["uid"] for n, p in pods_of(state, "ru").items()}
        observer = Observer(fleet.state_dir, "ru", max_unavailable=max_unavailable, replicas=replicas)
        observer.start()
        apply(fleet, doc(image, max_unavailable))
        crasher.storm(3.0, f"{i}: -> {image} (maxUnavailable {max_unavailable})", 2.0)
        crasher.restart()
        settle(fleet, state, "ru", replicas, tag, extra=updated_to(state, "ru", image))
        check(observer, fleet, "ru", tag)
        crasher.rounds += 1
        after = {n: p["metadata"]["uid"] for n, p in pods_of(state, "ru").items()}
        if policy == "InPlaceIfPossible":
            assert after == before, f"{tag}: an image-only change is made in place, the pods kept"
        else:
            assert not set(after.values()) & set(before.values()), f"{tag}: ReCreate makes every pod anew"
    print(f"{scenario}: {crasher.crash_points} crash points: {crasher.log}")


def test_kill_ops_state(fleet: Fleet, state: SqliteState, faults: FaultConfig) -> None:
    rng, crasher = faults.rng("kill"), Crasher(fleet, faults.rng("kill/kills"), "kill")
    replicas = 5
    apply(fleet, gss_doc("kl", replicas))
    settle(fleet, state, "kl", replicas, faults.tag("kill"))
    for i in range(faults.iterations):
        tag = faults.tag("kill", i)
        pods = pods_of(state, "kl")
        victims = rng.sample(sorted(pods), rng.randint(1, 2))
        protected = {n: p["metadata"]["uid"] for n, p in pods.items() if n not in victims}
        observer = Observer(fleet.state_dir, "kl", protected=protected)
        observer.start()
        for v in victims:
            fleet.gk("patch", "gs", v, "--type", "merge", "-p", '{"spec":{"opsState":"Kill"}}')
        crasher.storm(2.0, f"{i}: Kill {victims}")
        crasher.restart()
        settle(fleet, state, "kl", replicas - len(victims), tag)
        check(observer, fleet, "kl", tag)
        crasher.rounds += 1
        assert set(pods_of(state, "kl")) == set(protected), f"{tag}: {sorted(pods_of(state, 'kl'))}"
        gss = state.get("GameServerSet", "default", "kl")
        assert gss is not None and gss["spec"]["replicas"] == replicas - len(victims)
        if i == faults.iterations - 1:
            break
        fleet.gk("scale", "gss", "kl", "--replicas", str(replicas))
        settle(fleet, state, "kl", replicas, tag)
    print(f"kill: {crasher.crash_points} crash points: {crasher.log}")


def test_reserve_ids(fleet: Fleet, state: SqliteState, faults: FaultConfig) -> None:
    rng, crasher = faults.rng("reserve"), Crasher(fleet, faults.rng("reserve/kills"), "reserve")
    replicas = 4
    apply(fleet, gss_doc("rs", replicas))
    settle(fleet, state, "rs", replicas, faults.tag("reserve"))
    for i in range(faults.iterations):
        tag = faults.tag("reserve", i)
        reserved = sorted(rng.sample(range(8), rng.randint(0, 3)))
        observer = Observer(fleet.state_dir, "rs")
        observer.start()
        fleet.gk("patch", "gss", "rs", "--type", "merge", "-p",
                 json.dumps({"spec": {"reserveGameServerIds": reserved}}))
        crasher.storm(2.0, f"{i}: reserve {reserved}")
        crasher.restart()

        def no_reserved(pods: dict[str, dict[str, Any]], reserved: list[int] = reserved) -> list[str]:
            return [f"{n} is on a reserved ordinal {reserved}" for n in pods if ordinal(n) in reserved]

        settle(fleet, state, "rs", replicas, tag, extra=no_reserved)
        check(observer, fleet, "rs", tag)
        crasher.rounds += 1
    print(f"reserve: {crasher.crash_points} crash points: {crasher.log}")


PROBE_OPS = ["WaitToBeDeleted", "None", "Allocated"]


def test_probe_driven_ops_state(fleet: Fleet, state: SqliteState, faults: FaultConfig) -> None:
    rng, crasher = faults.rng("probe"), Crasher(fleet, faults.rng("probe/kills"), "probe")
    replicas = 4
    quality = {
        "name": "mode", "containerName": "main", "permanent": False, "initialDelaySeconds": 1, "periodSeconds": 1,
        "exec": {"command": ["sh", "-c", "cat mode 2>/dev/null || echo None"]},
        "serviceQualityAction": [{"state": True, "result": ops, "opsState": ops} for ops in PROBE_OPS],
    }
    apply(fleet, gss_doc("pr", replicas, qualities=[quality]))
    settle(fleet, state, "pr", replicas, faults.tag("probe"))
    for i in range(faults.iterations):
        tag = faults.tag("probe", i)
        wanted = {n: rng.choice(PROBE_OPS) for n in pods_of(state, "pr")}
        observer = Observer(fleet.state_dir, "pr")
        observer.start()
        for name, ops in wanted.items():
            (fleet.state_dir / "pods" / "default" / name / "main" / "mode").write_text(ops + "\n")
        crasher.storm(2.5, f"{i}: modes {wanted}")
        crasher.restart()

        def ops_follow(pods: dict[str, dict[str, Any]], wanted: dict[str, str] = wanted) -> list[str]:
            gs = game_servers_of(state, "pr")
            return [f"{n} opsState {g['spec'].get('opsState')}, probe says {wanted[n]}"
                    for n, g in gs.items() if g["spec"].get("opsState") != wanted.get(n)]

        settle(fleet, state, "pr", replicas, tag, extra=ops_follow)
        check(observer, fleet, "pr", tag)
        crasher.rounds += 1
    print(f"probe: {crasher.crash_points} crash points: {crasher.log}")


def kill_processes_rounds(fleet: Fleet, state: SqliteState, faults: FaultConfig, scenario: str,
                          kinds: list[str]) -> None:
    rng, crasher = faults.rng(scenario), Crasher(fleet, faults.rng(scenario + "/kills"), scenario)
    replicas = 3
    apply(fleet, gss_doc("pk", replicas))
    settle(fleet, state, "pk", replicas, faults.tag(scenario))
    for i in range(faults.iterations):
        tag = faults.tag(scenario, i)
        victim = rng.choice(sorted(pods_of(state, "pk")))
        what = rng.choice(kinds)
        controller_up = rng.random() < 0.5
        if not controller_up:
            crasher.crash_after(0, 0.2, f"{i}: before killing the {what} of {victim}")
        procs = [p for p in census(fleet.state_dir) if p.pod == victim]
        game = games_by_pod(procs)[(victim, "main")][0]
        supervisor = next(p for p in procs if p.is_supervisor)
        targets = {"game": [game.pid], "supervisor": [supervisor.pid], "both": [supervisor.pid, game.pid]}[what]
        for pid in targets:
            kill_pid(pid, signal.SIGKILL)
        crasher.process_kills += len(targets)
        crasher.log.append(f"{i}: SIGKILL {what} of {victim} (controller {'up' if controller_up else 'down'})")
        observer = Observer(fleet.state_dir, "pk")
        observer.start()
        if not controller_up:
            crasher.restart(1.0)
        elif rng.random() < 0.5:
            crasher.crash_after(0, 1.0, f"{i}: after killing the {what}")
            crasher.restart()
        settle(fleet, state, "pk", replicas, tag)
        check(observer, fleet, "pk", tag)
        crasher.rounds += 1
    print(f"{scenario}: {crasher.crash_points} crash points: {crasher.log}")


def test_game_process_killed(fleet: Fleet, state: SqliteState, faults: FaultConfig) -> None:
    kill_processes_rounds(fleet, state, faults, "game-killed", ["game"])


def test_supervisor_killed(fleet: Fleet, state: SqliteState, faults: FaultConfig) -> None:
    kill_processes_rounds(fleet, state, faults, "supervisor-killed", ["supervisor", "both"])
