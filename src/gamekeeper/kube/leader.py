"""Leader election with a `coordination.k8s.io/v1` Lease (client-go's leaderelection, in small).

- A candidate takes the Lease when it has no holder, or when the holder's record has not changed for
  `lease_duration` as measured on the candidate's own monotonic clock from the moment it first saw that
  record (never by comparing the holder's timestamps with our wall clock: clocks of two nodes may differ).
- Every write is conditional on the resourceVersion that was read, so two candidates cannot both win: one
  of the two writes gets 409.
- The leader renews every `retry_period`. If it has not renewed successfully for `renew_deadline`
  (< lease_duration), it stops acting at once (`LeadershipLost`), before any other candidate can consider
  the lease expired: that is what keeps two replicas from ever both acting.
- On a clean shutdown the leader releases the Lease (empty holder, duration 1 s) so a standby takes over
  within one retry period rather than a whole lease duration.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from gamekeeper.kube.client import KubeClient
from gamekeeper.kube.resources import LEASE
from gamekeeper.kube.store import micro_time
from gamekeeper.ports.store import Conflict, Obj, StoreError

log = logging.getLogger("gamekeeper.kube.leader")


class LeadershipLost(Exception):
    pass


@dataclass(frozen=True)
class LeaseTiming:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration "
                f"(got {self.retry_period:g} < {self.renew_deadline:g} < {self.lease_duration:g})"
            )


class LeaseElector:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        timing: LeaseTiming | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing or LeaseTiming()
        self.clock = clock
        self.rng = rng or random.Random()
        self.is_leader = False
        self.transitions = 0
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._last_renew = 0.0
        self.last_error = ""

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _spec(self, lease: Obj | None, acquiring: bool) -> dict[str, Any]:
        now = micro_time(self.clock())
        old = (lease or {}).get("spec") or {}
        transitions = int(old.get("leaseTransitions") or 0)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.timing.lease_duration)),
            "acquireTime": now if acquiring else old.get("acquireTime", now),
            "renewTime": now,
            # As client-go: every change of holder of an existing lease counts, a released one included.
            "leaseTransitions": transitions + 1 if acquiring and lease is not None else transitions,
        }

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when we hold the lease afterwards."""
        try:
            lease = await self.client.get(LEASE, self.namespace, self.name)
            if lease is None:
                await self.client.create(LEASE, {
                    "apiVersion": LEASE.api_version, "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec(None, acquiring=True),
                })
                self._became_leader()
                return True
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            record = (holder, spec.get("renewTime"), spec.get("leaseDurationSeconds"), spec.get("acquireTime"))
            now = self._now()
            if record != self._observed:
                self._observed, self._observed_at = record, now
            if holder and holder != self.identity:
                duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_duration)
                if now < self._observed_at + duration:
                    if self.is_leader:
                        raise LeadershipLost(f"the lease is now held by {holder}")
                    return False
            acquiring = holder != self.identity
            lease["spec"] = {**spec, **self._spec(lease, acquiring=acquiring)}
            await self.client.replace(LEASE, lease)
            if acquiring:
                self._became_leader()
            self._last_renew = self._now()
            return True
        except Conflict:
            return False  # someone else wrote first; look again next period
        except (StoreError, OSError, TimeoutError) as err:
            self.last_error = str(err)
            log.warning("lease %s/%s: %s", self.namespace, self.name, err)
            return False

    def _became_leader(self) -> None:
        if not self.is_leader:
            self.transitions += 1
            log.info("became leader (lease %s/%s, identity %s)", self.namespace, self.name, self.identity)
        self.is_leader = True
        self._last_renew = self._now()

    async def acquire(self) -> None:
        """Wait until we are the leader."""
        log.info("waiting to become leader (lease %s/%s, identity %s)", self.namespace, self.name, self.identity)
        while not await self.try_acquire_or_renew():
            await asyncio.sleep(self.timing.retry_period * (1 + 0.2 * self.rng.random()))

    async def hold(self) -> None:
        """Renew until leadership is lost; then raise LeadershipLost (the caller stops acting at once)."""
        while True:
            await asyncio.sleep(self.timing.retry_period)
            try:
                renewed = await self.try_acquire_or_renew()
            except LeadershipLost:
                self.is_leader = False
                raise
            if not renewed and self._now() - self._last_renew >= self.timing.renew_deadline:
                self.is_leader = False
                raise LeadershipLost(
                    f"could not renew the lease for {self.timing.renew_deadline:g}s ({self.last_error or 'conflict'})"
                )

    async def release(self) -> None:
        """Give the lease up (clean shutdown) so that a standby need not wait for it to expire."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            lease = await self.client.get(LEASE, self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            now = micro_time(self.clock())
            lease["spec"] = {**lease["spec"], "holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": now}
            await self.client.replace(LEASE, lease)
            log.info("released lease %s/%s", self.namespace, self.name)
        except (StoreError, OSError, TimeoutError) as err:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, err)
