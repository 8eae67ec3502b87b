"""Leader election over a coordination.k8s.io/v1 Lease (client-go's leaderelection).

One candidate holds the Lease and renews ``spec.renewTime`` every ``retry_period``; the others
retry. A Lease counts as held while its record last changed less than ``leaseDurationSeconds``
ago *by the observer's own clock* (no clock-skew assumptions between machines). Every write
carries the resourceVersion that was read, so two candidates can never both win a round. A leader
that cannot renew within ``renew_deadline`` (shorter than the lease duration) stops leading before
anyone else may take over; on a graceful stop it releases the Lease so a successor needs no wait.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.rest import ApiClient
from peapod.clock import Clock, rfc3339_micro

log = logging.getLogger(__name__)

LEASES = resource("coordination.k8s.io", "v1", "leases")
JITTER = 1.2


class LeaderElector:
    def __init__(
        self, client: ApiClient, *, name: str, namespace: str = "kube-system", identity: str,
        lease_duration: float = 15, renew_deadline: float = 10, retry_period: float = 2, clock: Clock,
        release_on_cancel: bool = True,
    ) -> None:
        if lease_duration <= renew_deadline:
            raise ValueError("lease_duration must be greater than renew_deadline")
        if renew_deadline <= retry_period * JITTER:
            raise ValueError("renew_deadline must be greater than retry_period*1.2")
        self.client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.clock = clock
        self.release_on_cancel = release_on_cancel
        self._observed: dict[str, Any] = {}
        self._observed_at = 0.0
        self._observed_rv = ""

    # -- state ---------------------------------------------------------------------------------------
    @property
    def leader(self) -> str:
        """The holder identity last observed ("" when nobody holds the Lease)."""
        return str(self._observed.get("holderIdentity") or "")

    def is_leader(self) -> bool:
        return self.leader == self.identity

    def _lease_valid(self) -> bool:
        duration = float(self._observed.get("leaseDurationSeconds") or 0)
        return self._observed_at + duration > self.clock.monotonic()

    def _observe(self, spec: dict[str, Any], rv: str) -> None:
        if spec != self._observed:
            self._observed = dict(spec)
            self._observed_at = self.clock.monotonic()
        self._observed_rv = rv

    # -- one attempt -----------------------------------------------------------------------------
    async def try_acquire_or_renew(self) -> bool:
        """One round of client-go's tryAcquireOrRenew; True when we hold the Lease afterwards."""
        now = rfc3339_micro(self.clock.now())
        record: dict[str, Any] = {
            "holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
            "acquireTime": now, "renewTime": now, "leaseTransitions": 0,
        }
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except ApiError as e:
            if e.code != 404:
                log.info("leader election: reading lease %s/%s: %s", self.namespace, self.name, e.message)
                return False
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace}, "spec": record}
            try:
                created = await self.client.create(LEASES, body, self.namespace)
            except ApiError as ce:
                log.info("leader election: creating lease: %s", ce.message)
                return False
            self._observe(created.get("spec") or record, created["metadata"].get("resourceVersion", ""))
            return True
        spec = lease.get("spec") or {}
        self._observe(spec, lease["metadata"].get("resourceVersion", ""))
        if spec.get("holderIdentity") and self._lease_valid() and not self.is_leader():
            return False
        transitions = int(spec.get("leaseTransitions") or 0)
        if self.is_leader():
            record["acquireTime"] = spec.get("acquireTime") or now
            record["leaseTransitions"] = transitions
        else:
            record["leaseTransitions"] = transitions + 1
        lease["spec"] = record
        try:
            updated = await self.client.update(LEASES, lease)
        except ApiError as e:
            log.info("leader election: updating lease: %s", e.message)
            return False
        self._observe(updated.get("spec") or record, updated["metadata"].get("resourceVersion", ""))
        return True

    async def _attempt(self, budget: float) -> bool:
        """An attempt that gives up after ``budget`` seconds on the injected clock."""
        attempt = asyncio.ensure_future(self.try_acquire_or_renew())
        timer = asyncio.ensure_future(self.clock.sleep(max(budget, 0.0)))
        try:
            done, _ = await asyncio.wait({attempt, timer}, return_when=asyncio.FIRST_COMPLETED)
            if attempt in done:
                return attempt.result()
            return False
        finally:
            for t in (attempt, timer):
                if not t.done():
                    t.cancel()

    async def release(self) -> bool:
        """Give the Lease up (holder cleared, duration 1 s) if we still hold it."""
        if not self.is_leader():
            return True
        now = rfc3339_micro(self.clock.now())
        body = {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace,
                         "resourceVersion": self._observed_rv},
            "spec": {"leaseDurationSeconds": 1, "acquireTime": now, "renewTime": now,
                     "leaseTransitions": int(self._observed.get("leaseTransitions") or 0)},
        }
        try:
            updated = await self.client.update(LEASES, body)
        except (ApiError, OSError, TimeoutError, aiohttp.ClientError) as e:
            log.info("leader election: releasing lease: %s", e)
            return False
        self._observe(updated.get("spec") or {}, updated["metadata"].get("resourceVersion", ""))
        return True

    # -- the loop ------------------------------------------------------------------------------------
    async def _acquire(self) -> None:
        while True:
            if await self._attempt(self.renew_deadline):
                log.info("leader election: %s acquired lease %s/%s", self.identity, self.namespace, self.name)
                return
            await self.clock.sleep(self.retry_period * random.uniform(1.0, JITTER))

    async def _renew(self) -> None:
        """Renew every retry_period; return once renewing failed for renew_deadline."""
        last = self.clock.monotonic()
        while True:
            await self.clock.sleep(self.retry_period)
            deadline = last + self.renew_deadline
            if await self._attempt(deadline - self.clock.monotonic()):
                last = self.clock.monotonic()
                continue
            if self.clock.monotonic() >= deadline or (self.leader and not self.is_leader()):
                log.warning("leader election: %s lost lease %s/%s", self.identity, self.namespace, self.name)
                return

    async def run(
        self, on_started_leading: Callable[[], Awaitable[Any]],
        on_stopped_leading: Callable[[], Any] | None = None,
    ) -> None:
        """Campaign, then run ``on_started_leading()`` while leading; return when leadership is lost.

        Cancelling ``run`` stops the work, releases the Lease (unless ``release_on_cancel`` is
        False) and re-raises. ``on_stopped_leading`` is called in every case.
        """
        work: asyncio.Task[Any] | None = None
        try:
            await self._acquire()
            work = asyncio.ensure_future(on_started_leading())
            await self._renew()
        except asyncio.CancelledError:
            if self.release_on_cancel:
                await self._stop(work)
                await self.release()
                work = None
            raise
        finally:
            await self._stop(work)
            if on_stopped_leading is not None:
                result = on_stopped_leading()
                if inspect.isawaitable(result):
                    await result

    @staticmethod
    async def _stop(work: asyncio.Task[Any] | None) -> None:
        if work is None or work.done():
            if work is not None and not work.cancelled() and work.exception() is not None:
                log.error("leader election: leading work failed: %s", work.exception())
            return
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
