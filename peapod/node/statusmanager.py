"""The status manager: the only writer of pod status on this node (kubelet's status_manager.go).

Pod workers hand it the status they computed (``set_status``); a single loop sends a merge patch
of ``status`` to ``pods/NAME/status`` when it differs from what the API has, with
``metadata.uid`` in the patch so a same-named new pod is never touched (the API server rejects a
uid change). Patches carry no resourceVersion: the agent owns these fields, last write wins.
It also sends the final ``DELETE`` (gracePeriodSeconds=0, uid precondition) of a pod the agent
has fully stopped and cleaned.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from peapod.api.errors import ApiError
from peapod.api.resources import resource
from peapod.client.rest import ApiClient
from peapod.clock import Clock

log = logging.getLogger(__name__)

PODS = resource("", "v1", "pods")
Obj = dict[str, Any]


@dataclass
class _Entry:
    namespace: str
    name: str
    uid: str
    status: Obj
    dirty: bool = True


def status_differs(want: Obj, have: Obj | None) -> bool:
    """True if any field of ``want`` differs from ``have`` (fields only ``have`` has are ignored)."""
    have = have or {}
    return any(have.get(k) != v for k, v in want.items())


class StatusManager:
    def __init__(self, client: ApiClient, *, clock: Clock,
                 api_status: Callable[[str], Obj | None] | None = None, retry_interval: float = 1.0) -> None:
        """``api_status(uid)`` returns the status the API has (the informer's cache), if known."""
        self.client = client
        self.clock = clock
        self._api_status = api_status or (lambda uid: None)
        self._entries: dict[str, _Entry] = {}
        self._written: dict[str, Obj] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.retry_interval = retry_interval
        self.patches = 0

    def get(self, uid: str) -> Obj | None:
        e = self._entries.get(uid)
        return copy.deepcopy(e.status) if e else None

    def set_status(self, pod: Obj, status: Obj) -> None:
        md = pod["metadata"]
        uid = md["uid"]
        e = self._entries.get(uid)
        if e is not None and e.status == status and not e.dirty:
            if not status_differs(status, self._api_status(uid) or self._written.get(uid)):
                return
        self._entries[uid] = _Entry(md.get("namespace", "default"), md["name"], uid, copy.deepcopy(status))
        self._idle.clear()
        self._wake.set()

    def forget(self, uid: str) -> None:
        self._entries.pop(uid, None)
        self._written.pop(uid, None)

    async def sync_once(self) -> bool:
        """Send every pending patch; True when nothing is left pending."""
        return await self._pass() and not any(e.dirty for e in self._entries.values())

    async def _pass(self) -> bool:
        """One pass over the pending statuses; False when a write failed and must be retried later
        (statuses that arrive during the pass are not failures: the caller loops again at once)."""
        ok = True
        for uid, e in list(self._entries.items()):
            if not e.dirty:
                continue
            have = self._api_status(uid)
            written = self._written.get(uid)
            if not status_differs(e.status, have if have is not None else written):
                e.dirty = False
                continue
            patch = {"metadata": {"uid": uid}, "status": e.status}
            try:
                got = await self.client.patch(PODS, e.name, patch, e.namespace, subresource="status",
                                              patch_type="merge")
                self.patches += 1
                self._written[uid] = got.get("status") or {}
                if self._entries.get(uid) is e:
                    e.dirty = False
            except ApiError as err:
                if err.code in (403, 404, 409, 422):
                    # the pod is gone, is another pod now, or is no longer bound to this node
                    # (node authorization answers 403): nothing to write any more
                    log.debug("status of %s/%s not written: %s", e.namespace, e.name, err.message)
                    if self._entries.get(uid) is e:
                        e.dirty = False
                else:
                    log.info("status of %s/%s: %s; retrying", e.namespace, e.name, err.message)
                    ok = False
            except (TimeoutError, OSError, aiohttp.ClientError) as err:
                # aiohttp.ClientError: also a server that died mid-request (ServerDisconnectedError,
                # not an OSError), which must not end this loop
                log.info("status of %s/%s: %s; retrying", e.namespace, e.name, err)
                ok = False
        return ok

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not await self._pass():
                await self.clock.sleep(self.retry_interval)  # a write failed: back off
                self._wake.set()
            elif any(e.dirty for e in self._entries.values()):
                self._wake.set()  # new statuses arrived during the pass: write them now
            else:
                self._idle.set()

    async def flush(self) -> None:
        """Wait until every pending status is written (or given up)."""
        await self._idle.wait()

    async def delete_pod(self, pod: Obj) -> None:
        """The final delete of a pod this node has stopped and cleaned up."""
        md = pod["metadata"]
        try:
            await self.client.delete(PODS, md["name"], md.get("namespace", "default"), grace_period_seconds=0,
                                     preconditions={"uid": md["uid"]})
        except ApiError as e:
            # 404: gone; 409: the name is another pod now; 403: the name is a pod bound to another
            # node (node authorization), so not ours either: a pod's nodeName never changes.
            if e.code not in (403, 404, 409):
                raise
        self.forget(md["uid"])
