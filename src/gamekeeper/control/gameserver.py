"""GameServer reconciler (upstream gameserver_controller.go): one key = one pod/GameServer name."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from gamekeeper.api.models import GS_DELETING_KEY, REAPPLY_QUALITIES_KEY
from gamekeeper.control.specs import SpecCache
from gamekeeper.core.gameserver import gs_to_pod, gss_name_for, new_game_server, pod_to_gs
from gamekeeper.core.update import synced_container_images
from gamekeeper.ports.store import AlreadyExists, NotFound, Store

log = logging.getLogger("gamekeeper.gameserver")


class GameServerController:
    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock
        self._specs = SpecCache()

    async def reconcile(self, namespace: str, name: str) -> None:
        pod = await self.store.get("Pod", namespace, name)
        gs = await self.store.get("GameServer", namespace, name)
        gss = await self.store.get("GameServerSet", namespace, gss_name_for(pod, gs, name))

        if pod is None:
            if gs is not None and (gs["metadata"].get("labels") or {}).get(GS_DELETING_KEY) == "true":
                with contextlib.suppress(NotFound):
                    await self.store.delete("GameServer", namespace, name)
            return
        if gss is None:
            return
        if gs is None:
            with contextlib.suppress(AlreadyExists):
                await self.store.create(new_game_server(pod, gss))
            return

        now = self.clock()
        sync = gs_to_pod(gs, pod, now)
        pod_patch = sync.patch()
        # syncPodContainers: a GameServer's own container image overrides the template's on its live pod; the
        # runtime then restarts just that container. Part of the same write, and only when an image differs.
        containers = synced_container_images(pod["spec"]["containers"], (gs.get("spec") or {}).get("containers"))
        if containers is not None:
            pod_patch = {**(pod_patch or {}), "spec": {"containers": containers}}
            log.info("container image from the GameServer", extra={"gs": name, "containers": [
                c["name"] for c, old in zip(containers, pod["spec"]["containers"], strict=True)
                if c.get("image") != old.get("image")]})
        if pod_patch is not None:
            pod = await self.store.patch(
                "Pod", namespace, name, pod_patch, resource_version=pod["metadata"]["resourceVersion"]
            )
        for event in sync.events:
            await self.store.record_event(gs, event.type, event.reason, event.message)

        spec = self._specs.get(gss)
        reapply = (gss["metadata"].get("annotations") or {}).get(REAPPLY_QUALITIES_KEY) == "true"
        result = pod_to_gs(
            gs, pod, spec.service_qualities or [], gss["spec"]["gameServerTemplate"].get("metadata"), now,
            reapply=reapply,
        )
        if result.patch is not None:
            gs = await self.store.patch(
                "GameServer", namespace, name, result.patch, resource_version=gs["metadata"]["resourceVersion"]
            )
            if "spec" in result.patch:
                log.info(
                    "service quality acted",
                    extra={"gs": name, "gss": gss["metadata"]["name"], "qualities": result.acted,
                           "changes": result.patch["spec"]},
                )
        for decision in result.decisions:
            # One line per decision, whatever it led to, so a log search answers "why is this server X".
            log.info(
                "service quality decision",
                extra={"gss": gss["metadata"]["name"], "gs": name, "quality": decision["quality"],
                       "status": decision["status"], "result": decision["result"], "action": decision["action"]},
            )
        for event in result.events:
            await self.store.record_event(gs, event.type, event.reason, event.message)
        if result.status is not None:
            await self.store.patch(
                "GameServer", namespace, name, {"status": result.status},
                resource_version=gs["metadata"]["resourceVersion"], subresource="status",
            )
