"""Probe path (a): the PodProbeMarker exactly as upstream builds it (spec §2.1), and its life cycle."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gamekeeper.kube.operator import detect_probe_path
from gamekeeper.kube.ppm import PPM_HASH_KEY, desired_ppm
from gamekeeper.kube.resources import GAME_SERVER_SET
from tests.kube.conftest import Cluster, seed_yaml

pytestmark = pytest.mark.asyncio


def with_identity(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["metadata"]["uid"] = "uid-1"
    return doc


async def test_the_ppm_is_upstreams() -> None:
    gss = with_identity(seed_yaml("demo-gs.yaml"))
    del gss["spec"]["serviceQualities"][0]["periodSeconds"]  # 0 / absent -> OKG's default
    ppm = desired_ppm(gss)
    assert ppm["apiVersion"] == "apps.kruise.io/v1alpha1" and ppm["kind"] == "PodProbeMarker"
    assert ppm["metadata"]["name"] == "demo-gs" and ppm["metadata"]["namespace"] == "default"
    assert ppm["metadata"]["ownerReferences"] == [{
        "apiVersion": "game.kruise.io/v1alpha1", "kind": "GameServerSet", "name": "demo-gs", "uid": "uid-1",
        "controller": True, "blockOwnerDeletion": True}]
    assert ppm["spec"]["selector"] == {"matchLabels": {"game.kruise.io/owner-gss": "demo-gs"}}
    assert ppm["spec"]["probes"] == [{
        "name": "healthy",
        "containerName": "minecraft",
        "probe": {
            "exec": {"command": ["bash", "-c", "./healthy.sh && echo 'healthy' || echo 'unhealthy'"]},
            "timeoutSeconds": 5, "initialDelaySeconds": 1, "periodSeconds": 3, "successThreshold": 1,
            "failureThreshold": 3,
        },
        "podConditionType": "game.kruise.io/healthy",
    }]
    assert "markerPolicy" not in ppm["spec"]  # OKG never sets it: only pod conditions appear
    assert ppm["metadata"]["annotations"][PPM_HASH_KEY].isdigit()
    # The hash follows the qualities and nothing else.
    other = copy.deepcopy(gss)
    other["spec"]["replicas"] = 7
    assert desired_ppm(other)["metadata"]["annotations"] == ppm["metadata"]["annotations"]
    other["spec"]["serviceQualities"][0]["timeoutSeconds"] = 9
    assert desired_ppm(other)["metadata"]["annotations"] != ppm["metadata"]["annotations"]


async def test_the_probe_path_is_chosen_from_discovery(cluster: Cluster) -> None:
    client = cluster.client()
    assert (await detect_probe_path(client, "auto"))[0] == "exec"
    assert (await detect_probe_path(client, "exec"))[0] == "exec"
    with pytest.raises(RuntimeError, match="is OpenKruise installed"):
        await detect_probe_path(client, "kruise")
    cluster.install_kruise()
    path, reason = await detect_probe_path(client, "auto")
    assert path == "kruise" and "podprobemarkers" in reason
    assert (await detect_probe_path(client, "exec"))[0] == "exec"


async def test_the_ppm_follows_the_set(cluster: Cluster) -> None:
    cluster.install_kruise()
    cluster.start_operator()
    await cluster.apply(seed_yaml("demo-gs.yaml"))
    await cluster.eventually("the PPM", lambda: cluster.world.find("PodProbeMarker", "default", "demo-gs") is not None)
    first = cluster.world.find("PodProbeMarker", "default", "demo-gs")
    gss = cluster.world.find("GameServerSet", "default", "demo-gs")
    assert first["metadata"]["ownerReferences"][0]["uid"] == gss["metadata"]["uid"]
    await cluster.eventually("CreatePpm", lambda: [e["note"] for e in cluster.events(reason="CreatePpm")] == [
        "create PodProbeMarker"])

    # A changed quality: the probes are rebuilt, the hash changes, UpdatePpm.
    client = cluster.client()
    qualities = copy.deepcopy(gss["spec"]["serviceQualities"])
    qualities[0]["timeoutSeconds"] = 2
    await client.patch(GAME_SERVER_SET, "default", "demo-gs", {"spec": {"serviceQualities": qualities}})
    await cluster.eventually("UpdatePpm", lambda: bool(cluster.events(reason="UpdatePpm")))
    updated = cluster.world.find("PodProbeMarker", "default", "demo-gs")
    assert updated["spec"]["probes"][0]["probe"]["timeoutSeconds"] == 2
    assert updated["metadata"]["annotations"][PPM_HASH_KEY] != first["metadata"]["annotations"][PPM_HASH_KEY]
    assert updated["metadata"]["uid"] == first["metadata"]["uid"]  # updated, not recreated

    # An explicit empty list keeps a PPM with no probes; no qualities at all deletes it.
    await client.patch(GAME_SERVER_SET, "default", "demo-gs", {"spec": {"serviceQualities": []}})
    await cluster.eventually("no probes", lambda: cluster.world.find(
        "PodProbeMarker", "default", "demo-gs")["spec"]["probes"] == [])
    await client.patch(GAME_SERVER_SET, "default", "demo-gs", {"spec": {"serviceQualities": None}})
    await cluster.eventually("PPM deleted", lambda: cluster.world.find("PodProbeMarker", "default", "demo-gs") is None)

    # Deleting the set takes everything with it (the garbage collector, through ownerReferences).
    await client.patch(GAME_SERVER_SET, "default", "demo-gs", {"spec": {"serviceQualities": qualities}})
    await cluster.eventually("PPM again", lambda: bool(cluster.world.all("PodProbeMarker")))
    await client.delete(GAME_SERVER_SET, "default", "demo-gs")
    await cluster.eventually("all gone", lambda: not any(
        cluster.world.all(kind) for kind in ("PodProbeMarker", "Workload", "Pod", "GameServer")))
