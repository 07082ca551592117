"""The workload controller: plays upstream's Advanced StatefulSet (Kruise) for one GameServerSet.

- Scaling: one pod on each of the first `replicas` ordinals that are not reserved. The GameServerSet controller
  decides which ordinals are kept (`spec.replicas`, `spec.reserveOrdinals`); this controller carries it out.
- Revisions: each distinct pod template is kept as a `ControllerRevision` object named `<set>-<hash>` (owned by
  the workload, so it goes with it). A pod's `controller-revision-hash` label names the revision it was made
  from. Only the template counts: pausing, or changing the partition, never makes a pod out of date. The last
  revisions stay, so a pod on an old revision can still be compared with the new one (in place or not?) and a
  partitioned pod that is deleted comes back on its old revision, as with Kruise.
- Rolling update (spec §5): `core/update.py` decides which pods to update now; this module carries it out:
  ReCreate deletes the pod (it comes back from the new template on the same ordinal), in place walks the pod
  through the lifecycle states PreparingUpdate → Updating → Normal (GameServer states PreUpdate → Updating →
  Ready) and changes only its container images and template labels/annotations, so the pod record, the
  GameServer, its opsState and priorities all stay and the runtime restarts just the changed containers.
- Status: replicas, ready, updated, updatedReady (a pod in an in-place update is not ready, as Kruise's
  InPlaceUpdateReady readiness gate makes it), current and update revision.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from gamekeeper.api.models import (
    GS_DELETE_PRIORITY_KEY,
    GS_NETWORK_DISABLED_KEY,
    GS_OPS_STATE_KEY,
    GS_OPS_STATE_LAST_CHANGED_KEY,
    GS_STATE_KEY,
    LIFECYCLE_STATE_KEY,
    OWNER_GSS_KEY,
)
from gamekeeper.control.gameserverset import TEMPLATE_HASH_LABEL, owner_reference
from gamekeeper.control.pace import in_slices
from gamekeeper.core.ordinals import index_from_name, reserve_ordinal_set
from gamekeeper.core.scaling import managed_ordinals
from gamekeeper.core.state import derive_state
from gamekeeper.core.update import (
    IN_PLACE_ONLY,
    INPLACE_STATE_KEY,
    LIFECYCLE_NORMAL,
    LIFECYCLE_PREPARING_UPDATE,
    LIFECYCLE_UPDATING,
    REVISION_HISTORY_LIMIT,
    UPDATING_CONTAINERS_KEY,
    PodView,
    TemplateDiff,
    UpdateStrategy,
    creation_containers,
    in_place_containers,
    in_place_state,
    in_place_update_completed,
    is_current_revision_needed,
    lifecycle_state,
    parse_update_strategy,
    plan_rolling_update,
    pod_available,
    pod_ready,
    priority_key,
    revision_name,
    template_diff,
)
from gamekeeper.ports.store import AlreadyExists, Conflict, NotFound, Obj, Store, fingerprint, project

log = logging.getLogger("gamekeeper.workload")

REVISION_KIND = "ControllerRevision"
POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
# Labels this controller (or the GameServer controller) owns on a pod: a template label of the same name never
# overwrites or removes them during an in-place update.
MANAGED_LABELS = frozenset({TEMPLATE_HASH_LABEL, OWNER_GSS_KEY, POD_NAME_LABEL, LIFECYCLE_STATE_KEY})
MANAGED_ANNOTATIONS = frozenset({INPLACE_STATE_KEY, UPDATING_CONTAINERS_KEY})
# What a reconcile reads of every pod of the set (scaling, rollout views, status, revisions in use). The few pods
# it updates in place are read whole (`_whole`); a delete needs only the name and resourceVersion.
# Of the conditions only Ready is read (readiness, and minReadySeconds from its lastTransitionTime); a pod's other
# conditions (probe results with their messages) were most of the projection's size.
MEMBER_PATHS = ("metadata.labels", "metadata.deletionTimestamp", "status.phase", "status.conditions[type=Ready]")


# What the GameServer controller writes on a pod from its GameServer's spec that no step here reads (the rollout
# reads the update priority and the state, which are not here), and the probes' conditions (only Ready is read):
# a pod change that touches nothing else does not queue the workload. Everything else counts, whole pods included
# (an in-place update waits on containerStatuses and annotations).
UNREAD_LABELS = frozenset({GS_OPS_STATE_KEY, GS_DELETE_PRIORITY_KEY, GS_NETWORK_DISABLED_KEY})
UNREAD_ANNOTATIONS = frozenset({GS_OPS_STATE_LAST_CHANGED_KEY})


def pod_mark(pod: Obj) -> int:
    """A pod as this controller can read it, as a number (see UNREAD_LABELS)."""
    meta = dict(pod.get("metadata") or {})
    meta.pop("resourceVersion", None)
    meta.pop("managedFields", None)
    meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k not in UNREAD_LABELS}
    meta["annotations"] = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in UNREAD_ANNOTATIONS}
    status = dict(pod.get("status") or {})
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
    return fingerprint({"metadata": meta, "spec": pod.get("spec"), "status": status})


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def _revision_of(pod: Mapping[str, Any]) -> str:
    return _labels(pod).get(TEMPLATE_HASH_LABEL, "")


def _terminating(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


class _Diffs:
    """template_diff per old revision, computed once per reconcile."""

    def __init__(self, revisions: Mapping[str, Obj], new_template: Mapping[str, Any]) -> None:
        self.revisions = revisions
        self.new_template = new_template
        self._cache: dict[str, TemplateDiff | None] = {}

    def get(self, revision: str) -> TemplateDiff | None:
        """None when the pod's revision is unknown (made before revisions were kept, or pruned)."""
        if revision not in self._cache:
            old = self.revisions.get(revision)
            self._cache[revision] = None if old is None else template_diff(old.get("data") or {}, self.new_template)
        return self._cache[revision]


class WorkloadController:
    """Keeps the set's pods on the right ordinals and rolls them to the current template."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock
        # Who runs the queue sets this to come back after minReadySeconds: no periodic resync brings it back.
        self.requeue_after: Callable[[float, str, str], None] | None = None
        # InPlaceOnly refusals already reported, per set and update revision (an event per pod, not per reconcile).
        self._refused: dict[tuple[str, str], tuple[str, set[str]]] = {}

    async def reconcile(self, namespace: str, name: str) -> None:
        workload = await self.store.get("Workload", namespace, name)
        if workload is None:
            self._refused.pop((namespace, name), None)
            return
        spec = workload["spec"]
        strategy = parse_update_strategy(spec.get("updateStrategy"))
        revisions, update_rev = await self._sync_revisions(workload)
        current_rev = (workload.get("status") or {}).get("currentRevision") or ""
        if current_rev not in revisions:
            current_rev = update_rev
        listed = await self.store.list_projected("Pod", MEMBER_PATHS, namespace, {OWNER_GSS_KEY: name})
        pods = await self._adopt_unversioned(workload, listed, update_rev)
        wanted = set(managed_ordinals(spec["replicas"], reserve_ordinal_set(spec.get("reserveOrdinals"))))
        diffs = _Diffs(revisions, spec["template"])
        now = self.clock()

        members: list[Obj] = []
        async for part in in_slices(pods):
            for pod in part:
                ordinal = index_from_name(pod["metadata"]["name"])
                if ordinal in wanted:
                    members.append(pod)
                elif not _terminating(pod):
                    log.info("deleting pod %s/%s", namespace, pod["metadata"]["name"])
                    with contextlib.suppress(NotFound):
                        await self.store.delete("Pod", namespace, pod["metadata"]["name"])
        present = {index_from_name(p["metadata"]["name"]) for p in members}
        created_now: set[str] = set()
        missing = sorted(wanted - present)
        # One view per member, kept in step with `members` as pods are made: recomputing them for every pod
        # created made scaling up by N cost O(N²).
        views = await self._views(members, update_rev, strategy, diffs, now) if missing else []
        for ordinal in missing:
            if is_current_revision_needed(strategy, update_rev, ordinal, views) and current_rev != update_rev:
                revision, template = current_rev, revisions[current_rev].get("data") or spec["template"]
            else:
                revision, template = update_rev, spec["template"]
            created = await self._create_pod(workload, ordinal, template, revision)
            if created is not None:
                # Kept as the listed pods are (scaling up by thousands held every whole new pod to the end).
                created = project(created, MEMBER_PATHS)
                members.append(created)
                views.append(self._view(created, update_rev, strategy, diffs, now))
                created_now.add(created["metadata"]["name"])

        # As Kruise: finish the steps of in-place updates under way first; start new updates on a later pass.
        if not await self._refresh(workload, members, update_rev, strategy, diffs):
            await self._roll(workload, members, update_rev, strategy, diffs, now, created_now)
        await self._sync_status(workload, members, current_rev, update_rev, strategy, now)
        await self._prune_revisions(workload, revisions, pods, current_rev, update_rev)

    # -- revisions --------------------------------------------------------------------------------------------

    async def _sync_revisions(self, workload: Obj) -> tuple[dict[str, Obj], str]:
        """The set's revisions by name, with one for the current template (created, or made newest again)."""
        meta = workload["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        template = workload["spec"]["template"]
        update_rev = revision_name(name, template)
        listed = await self.store.list(REVISION_KIND, namespace, {OWNER_GSS_KEY: name})
        revisions = {
            r["metadata"]["name"]: r for r in listed
            if any(o.get("uid") == meta["uid"] for o in r["metadata"].get("ownerReferences") or [])
        }
        newest = max((int(r.get("revision") or 0) for r in revisions.values()), default=0)
        found = revisions.get(update_rev)
        if found is None:
            body = {
                "apiVersion": "apps/v1",
                "kind": REVISION_KIND,
                "metadata": {
                    "name": update_rev,
                    "namespace": namespace,
                    "labels": {OWNER_GSS_KEY: name},
                    "ownerReferences": [owner_reference(workload)],
                },
                "data": template,
                "revision": newest + 1,
            }
            try:
                found = await self.store.create(body)
                log.info("new revision %s/%s (%d)", namespace, update_rev, newest + 1)
            except AlreadyExists:
                found = await self.store.get(REVISION_KIND, namespace, update_rev) or body
            revisions[update_rev] = found
        elif int(found.get("revision") or 0) != newest:
            # Back to an earlier template: like a StatefulSet, that revision becomes the newest again.
            revisions[update_rev] = await self.store.patch(
                REVISION_KIND, namespace, update_rev, {"revision": newest + 1}
            )
        return revisions, update_rev

    async def _adopt_unversioned(self, workload: Obj, pods: list[Obj], update_rev: str) -> list[Obj]:
        """Pods made before revisions were kept carry the set's `templateHash`: if it is the current one, they were
        made from the current template, so they are relabelled rather than needlessly restarted."""
        legacy = workload["spec"].get("templateHash")
        out = []
        for pod in pods:
            if legacy and _revision_of(pod) == legacy and legacy != update_rev and not _terminating(pod):
                meta = pod["metadata"]
                pod = await self.store.patch(
                    "Pod", meta["namespace"], meta["name"], {"metadata": {"labels": {TEMPLATE_HASH_LABEL: update_rev}}},
                    resource_version=meta["resourceVersion"],
                )
            out.append(pod)
        return out

    async def _prune_revisions(
        self, workload: Obj, revisions: Mapping[str, Obj], pods: list[Obj], current_rev: str, update_rev: str
    ) -> None:
        """Keep the revisions in use and the REVISION_HISTORY_LIMIT newest others (StatefulSet truncateHistory)."""
        live = {current_rev, update_rev} | {_revision_of(p) for p in pods}
        history = sorted((r for n, r in revisions.items() if n not in live), key=lambda r: int(r.get("revision") or 0))
        for old in history[: max(0, len(history) - REVISION_HISTORY_LIMIT)]:
            with contextlib.suppress(NotFound):
                await self.store.delete(REVISION_KIND, workload["metadata"]["namespace"], old["metadata"]["name"])

    # -- pods -------------------------------------------------------------------------------------------------

    async def _create_pod(self, workload: Obj, ordinal: int, template: Mapping[str, Any], revision: str) -> Obj | None:
        meta = workload["metadata"]
        pod_name = f"{meta['name']}-{ordinal}"
        tmeta = template.get("metadata") or {}
        labels = {
            **(tmeta.get("labels") or {}),
            OWNER_GSS_KEY: meta["name"],
            TEMPLATE_HASH_LABEL: revision,
            POD_NAME_LABEL: pod_name,
        }
        # Upstream's pod webhook: a GameServer that outlived its pod (reclaimPolicy Delete) keeps its own images.
        gs = await self.store.get("GameServer", meta["namespace"], pod_name)
        containers = creation_containers(template["spec"]["containers"], ((gs or {}).get("spec") or {}).get(
            "containers"))
        pod: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": dict(tmeta.get("annotations") or {}),
                "ownerReferences": [owner_reference(workload)],
            },
            "spec": {**template["spec"], "containers": containers, "hostname": pod_name},
        }
        try:
            created = await self.store.create(pod)
        except AlreadyExists:
            return None
        log.info("created pod %s/%s (revision %s)", meta["namespace"], pod_name, revision)
        return created

    async def _views(
        self, members: list[Obj], update_rev: str, strategy: UpdateStrategy, diffs: _Diffs, now: datetime
    ) -> list[PodView]:
        views: list[PodView] = []
        async for part in in_slices(members):
            views += [self._view(p, update_rev, strategy, diffs, now) for p in part]
        return views

    async def _whole(self, pod: Obj) -> Obj:
        """The whole pod behind a listed projection, for a step that rewrites its containers or annotations. It must
        be the version the decision was made on: a newer one raises Conflict, and the reconcile decides again."""
        meta = pod["metadata"]
        whole = await self.store.get("Pod", meta["namespace"], meta["name"])
        if whole is None or whole["metadata"].get("resourceVersion") != meta.get("resourceVersion"):
            raise Conflict(f'Pod "{meta["name"]}" changed since it was listed')
        return whole

    def _view(self, pod: Obj, update_rev: str, strategy: UpdateStrategy, diffs: _Diffs, now: datetime) -> PodView:
        revision = _revision_of(pod)
        available, _ = pod_available(pod, strategy.min_ready_seconds, now)
        possible = False
        if strategy.in_place and revision != update_rev:
            diff = diffs.get(revision)
            possible = diff is not None and diff.in_place_possible
        return PodView(
            name=pod["metadata"]["name"],
            ordinal=index_from_name(pod["metadata"]["name"]),
            revision=revision,
            available=available,
            terminating=_terminating(pod),
            priority=priority_key(_labels(pod)),
            in_place_possible=possible,
        )

    # -- in-place steps -----------------------------------------------------------------------------------------

    async def _shown(self, pod: Obj, state: str) -> bool:
        """Has the GameServer controller published `state` for this pod (so that PreUpdate and Updating are seen
        on the GameServer, not skipped)? Also true when it never can: another state wins, or there is no GS."""
        if _labels(pod).get(GS_STATE_KEY) == state or derive_state(pod) != state:
            return True
        meta = pod["metadata"]
        return await self.store.get("GameServer", meta["namespace"], meta["name"]) is None

    async def _refresh(
        self, workload: Obj, members: list[Obj], update_rev: str, strategy: UpdateStrategy, diffs: _Diffs
    ) -> bool:
        """Carry in-place updates one step on (Kruise refreshPodState); True if anything was written."""
        wrote = False
        for pod in members:
            if _terminating(pod):
                continue
            state, revision = lifecycle_state(pod), _revision_of(pod)
            if state in (LIFECYCLE_UPDATING, LIFECYCLE_PREPARING_UPDATE):
                pod = await self._whole(pod)
            if state == LIFECYCLE_UPDATING:
                if in_place_update_completed(pod) and await self._shown(pod, "Updating"):
                    await self._set_lifecycle(pod, LIFECYCLE_NORMAL)
                    wrote = True
            elif state == LIFECYCLE_PREPARING_UPDATE:
                diff = diffs.get(revision)
                if revision == update_rev:  # the template went back meanwhile: nothing to do after all
                    await self._set_lifecycle(pod, LIFECYCLE_NORMAL)
                    wrote = True
                elif (not strategy.paused and strategy.in_place and diff is not None and diff.in_place_possible
                      and await self._shown(pod, "PreUpdate")):
                    await self._update_in_place(workload, pod, update_rev, diff)
                    wrote = True
                # Otherwise (paused, or the policy is now ReCreate) it waits, or _roll recreates it.
        return wrote

    async def _set_lifecycle(self, pod: Obj, state: str) -> None:
        meta = pod["metadata"]
        annotations: dict[str, str | None] = {}
        if state == LIFECYCLE_NORMAL and UPDATING_CONTAINERS_KEY in (meta.get("annotations") or {}):
            annotations[UPDATING_CONTAINERS_KEY] = None  # upstream removes it outside PreUpdate/Updating
        patch: dict[str, Any] = {"metadata": {"labels": {LIFECYCLE_STATE_KEY: state}}}
        if annotations:
            patch["metadata"]["annotations"] = annotations
        await self.store.patch("Pod", meta["namespace"], meta["name"], patch, resource_version=meta["resourceVersion"])
        log.info("pod %s/%s lifecycle %s", meta["namespace"], meta["name"], state)

    async def _game_server_containers(self, pod: Obj) -> list[dict[str, Any]] | None:
        gs = await self.store.get("GameServer", pod["metadata"]["namespace"], pod["metadata"]["name"])
        containers = ((gs or {}).get("spec") or {}).get("containers")
        return list(containers) if containers else None

    async def _prepare_in_place(self, pod: Obj, diff: TemplateDiff) -> None:
        """Step 1: lifecycle PreparingUpdate (GameServer state PreUpdate), naming the containers that will change."""
        meta = pod["metadata"]
        overrides = await self._game_server_containers(pod)
        _, changed = in_place_containers(pod["spec"]["containers"], diff.images, overrides)
        patch = {"metadata": {
            "labels": {LIFECYCLE_STATE_KEY: LIFECYCLE_PREPARING_UPDATE},
            "annotations": {UPDATING_CONTAINERS_KEY: ",".join(changed)},
        }}
        await self.store.patch("Pod", meta["namespace"], meta["name"], patch, resource_version=meta["resourceVersion"])
        log.info("pod %s/%s lifecycle PreparingUpdate (containers to update: %s)", meta["namespace"], meta["name"],
                 ",".join(changed) or "none")

    async def _update_in_place(self, workload: Obj, pod: Obj, update_rev: str, diff: TemplateDiff) -> None:
        """Step 2: new images, template labels/annotations and revision, lifecycle Updating, in one write."""
        meta = pod["metadata"]
        containers, changed = in_place_containers(
            pod["spec"]["containers"], diff.images, await self._game_server_containers(pod)
        )
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        running = {s.get("name"): s.get("containerID") for s in statuses}
        labels: dict[str, str | None] = {k: v for k, v in diff.labels.items() if k not in MANAGED_LABELS}
        labels.update({TEMPLATE_HASH_LABEL: update_rev, LIFECYCLE_STATE_KEY: LIFECYCLE_UPDATING})
        annotations: dict[str, str | None] = {k: v for k, v in diff.annotations.items() if k not in MANAGED_ANNOTATIONS}
        annotations[INPLACE_STATE_KEY] = in_place_state(update_rev, self.clock(), {n: running.get(n) for n in changed})
        patch: dict[str, Any] = {"metadata": {"labels": labels, "annotations": annotations}}
        if changed:
            patch["spec"] = {"containers": containers}
        await self.store.patch("Pod", meta["namespace"], meta["name"], patch, resource_version=meta["resourceVersion"])
        log.info("pod %s/%s updating in place to %s (containers %s)", meta["namespace"], meta["name"], update_rev,
                 ",".join(changed) or "none")
        await self._event(workload, "Normal", "SuccessfulUpdatePodInPlace",
                          f"successfully update pod {meta['name']} in-place(revision {update_rev})")

    # -- rolling update -----------------------------------------------------------------------------------------

    async def _roll(
        self, workload: Obj, members: list[Obj], update_rev: str, strategy: UpdateStrategy, diffs: _Diffs,
        now: datetime, created_now: set[str],
    ) -> None:
        meta = workload["metadata"]
        views = await self._views(members, update_rev, strategy, diffs, now)
        try:
            plan = plan_rolling_update(views, update_rev, workload["spec"]["replicas"], strategy)
        except ValueError as err:
            await self._warn_once(workload, update_rev, "maxUnavailable", "InvalidUpdateStrategy", str(err))
            return
        if plan.note and any(v.revision != update_rev for v in views):
            log.debug("rollout %s/%s: %s", meta["namespace"], meta["name"], plan.note)
        pods = {p["metadata"]["name"]: p for p in members}
        for decision in plan.updates:
            pod = pods[decision.pod.name]
            if decision.pod.name in created_now:
                continue  # made in this pass: look at it again once the store has told us about it
            if decision.in_place:
                diff = diffs.get(decision.pod.revision)
                assert diff is not None  # in_place_possible implies a known revision
                pod = await self._whole(pod)
                state = lifecycle_state(pod)
                if state == LIFECYCLE_UPDATING:
                    await self._update_in_place(workload, pod, update_rev, diff)  # changed again mid-update
                elif state != LIFECYCLE_PREPARING_UPDATE:  # (that one is _refresh's to carry on)
                    await self._prepare_in_place(pod, diff)
                continue
            try:
                await self.store.delete("Pod", meta["namespace"], pod["metadata"]["name"],
                                        resource_version=pod["metadata"]["resourceVersion"])
            except NotFound:
                continue
            except Conflict:
                raise  # it changed since we looked: decide again from fresh state
            log.info("deleting pod %s/%s to update it to %s", meta["namespace"], pod["metadata"]["name"], update_rev)
            await self._event(workload, "Normal", "SuccessfulDelete",
                              f"delete Pod {pod['metadata']['name']} to recreate it at revision {update_rev}")
        if plan.refused is not None:
            diff = diffs.get(plan.refused.revision)
            why = (f"{', '.join(diff.other)} changed (only container images and template labels/annotations can "
                   "change in place)") if diff is not None else (
                f"its revision {plan.refused.revision or '<none>'} is no longer known")
            await self._warn_once(workload, update_rev, plan.refused.name, "FailedUpdatePodInPlace",
                                  f"find strategy is {IN_PLACE_ONLY} but Pod {plan.refused.name} can not update "
                                  f"in-place: {why}; it is left on its revision")
        if strategy.min_ready_seconds and self.requeue_after is not None:
            waits = [pod_available(p, strategy.min_ready_seconds, now)[1] for p in members]
            soonest = min((w for w in waits if w > 0), default=0.0)
            if soonest:
                self.requeue_after(soonest + 0.1, meta["namespace"], meta["name"])

    async def _warn_once(self, workload: Obj, update_rev: str, subject: str, reason: str, message: str) -> None:
        key = (workload["metadata"]["namespace"], workload["metadata"]["name"])
        revision, seen = self._refused.get(key, ("", set()))
        if revision != update_rev:
            revision, seen = update_rev, set()
        if subject in seen:
            return
        seen.add(subject)
        self._refused[key] = (revision, seen)
        log.warning("%s/%s: %s", key[0], key[1], message)
        await self._event(workload, "Warning", reason, message)

    async def _event(self, workload: Obj, type_: str, reason: str, message: str) -> None:
        """Rollout events go on the GameServerSet, where `gk events --for gss/NAME` and describe show them."""
        meta = workload["metadata"]
        gss = await self.store.get("GameServerSet", meta["namespace"], meta["name"])
        await self.store.record_event(gss or workload, type_, reason, message)

    # -- status -----------------------------------------------------------------------------------------------

    async def _sync_status(
        self, workload: Obj, members: list[Obj], current_rev: str, update_rev: str, strategy: UpdateStrategy,
        now: datetime,
    ) -> None:
        live = [p for p in members if not _terminating(p)]
        updated = [p for p in live if _revision_of(p) == update_rev]
        ready = [p for p in live if pod_ready(p)]
        if (strategy.type == "RollingUpdate" and len(live) == workload["spec"]["replicas"]
                and len(updated) == len(live) and len(ready) == len(live)):
            current_rev = update_rev  # completeRollingUpdate
        status = {
            "replicas": len(live),
            "readyReplicas": len(ready),
            "availableReplicas": sum(1 for p in live if pod_available(p, strategy.min_ready_seconds, now)[0]),
            "currentReplicas": sum(1 for p in live if _revision_of(p) == current_rev),
            "updatedReplicas": len(updated),
            "updatedReadyReplicas": sum(1 for p in updated if pod_ready(p)),
            "currentRevision": current_rev,
            "updateRevision": update_rev,
            "observedGeneration": workload["metadata"].get("generation", 1),
        }
        if (workload.get("status") or {}) != status:
            await self.store.patch(
                "Workload", workload["metadata"]["namespace"], workload["metadata"]["name"], {"status": status},
                subresource="status",
            )
