"""Periodic refresh of the API-data volumes of running pods (kubelet's volume remount + token manager).

Every ``period`` seconds, for each pod whose worker is still syncing (never one being terminated), the
pod's configMap, secret, downwardAPI and projected volumes are re-rendered with
:func:`peapod.node.volumes.refresh_volumes`; the atomic writer publishes a new ``..data`` only when
a file's content changed. Sources:

- ConfigMaps and Secrets: one GET per referenced object per round, shared by every pod of the round
  (node authorization lets a node read the objects its pods use);
- downwardAPI labels/annotations: the pod object the agent holds (the informer's newest);
- projected serviceAccountToken: :class:`TokenCache`. A token is reused until 80% of its lifetime
  has passed or it is 24 h old (kubelet's token manager), then replaced through TokenRequest. The
  tokens already in the volumes are read back at first sight, so neither a pod's start nor an agent
  restart costs a TokenRequest before one is due.

subPath mounts are not updated (like kubelet): their binds keep showing the old files.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from peapod.clock import Clock
from peapod.node.volumes import DownwardValues, Mounter, RefreshResult, VolumeError, VolumeSources, refresh_volumes
from peapod.node.volumes.manager import describe_volume, volume_kind
from peapod.node.volumes.payload import DEFAULT_TOKEN_EXPIRATION

log = logging.getLogger(__name__)
Obj = dict[str, Any]

DEFAULT_PERIOD = 60.0  # kubelet's --sync-frequency
TOKEN_REFRESH_FRACTION = 0.8  # refresh once 80% of a token's lifetime has passed
TOKEN_MAX_AGE = timedelta(hours=24)  # and at least daily
API_DATA_KINDS = ("configMap", "secret", "downwardAPI", "projected")


# ---- tokens ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TokenInfo:
    token: str
    issued_at: datetime
    expires_at: datetime  # when the token counts as stale (a "warnafter" claim, else exp)


def _jwt_claims(token: str) -> Obj | None:
    parts = token.strip().split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (ValueError, json.JSONDecodeError):
        return None
    return claims if isinstance(claims, dict) else None


def token_info(token: str, expiration: int, now: datetime) -> TokenInfo:
    """When ``token`` was issued and goes stale, from its JWT claims (iat; kubernetes.io.warnafter for
    tokens the API server extended, else exp). A token that is no JWT counts as issued ``now`` with the
    requested ``expiration``."""
    claims = _jwt_claims(token) or {}
    iat = claims.get("iat")
    kube = claims.get("kubernetes.io")
    end = kube.get("warnafter") if isinstance(kube, dict) and kube.get("warnafter") else claims.get("exp")
    if isinstance(iat, int | float) and isinstance(end, int | float) and end > iat:
        issued = datetime.fromtimestamp(iat, now.tzinfo)
        return TokenInfo(token, issued, datetime.fromtimestamp(end, now.tzinfo))
    return TokenInfo(token, now, now + timedelta(seconds=expiration))


def token_needs_refresh(info: TokenInfo, now: datetime) -> bool:
    """kubelet's requiresRefresh: 80% of the lifetime passed, or the token is older than 24 h."""
    ttl = info.expires_at - info.issued_at
    return now >= info.issued_at + ttl * TOKEN_REFRESH_FRACTION or now >= info.issued_at + TOKEN_MAX_AGE


TokenKey = tuple[str, str | None, int]  # (pod uid, audience, requested expiration)
FetchToken = Callable[[str | None, int], Awaitable[str]]


class TokenCache:
    """Service account tokens of this node's pods, reused until they need a refresh."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._tokens: dict[TokenKey, TokenInfo] = {}

    def peek(self, key: TokenKey) -> TokenInfo | None:
        return self._tokens.get(key)

    def seed(self, key: TokenKey, token: str) -> None:
        """A token found in a volume (written at the pod's start, or before an agent restart)."""
        if key not in self._tokens and token:
            self._tokens[key] = token_info(token, key[2], self.clock.now())

    async def get(self, key: TokenKey, fetch: FetchToken) -> str:
        now = self.clock.now()
        info = self._tokens.get(key)
        if info is not None and not token_needs_refresh(info, now):
            return info.token
        try:
            token = await fetch(key[1], key[2])
        except Exception as e:
            if info is not None and now < info.expires_at:  # kubelet: keep serving a token still valid
                log.info("token refresh for pod %s failed, keeping the current token: %s", key[0], e)
                return info.token
            raise
        if token:
            self._tokens[key] = token_info(token, key[2], self.clock.now())
        return token

    def retain(self, uids: Iterable[str]) -> None:
        """Forget the tokens of pods no longer here."""
        keep = set(uids)
        for key in [k for k in self._tokens if k[0] not in keep]:
            del self._tokens[key]


# ---- what a pod's refresh reads --------------------------------------------------------------------

class RoundCache:
    """API objects read during one refresh round: each referenced object is read at most once."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str], Obj | BaseException | None] = {}
        self.reads = 0

    async def get(self, kind: str, namespace: str, name: str,
                  read: Callable[[str, str], Awaitable[Obj | None]]) -> Obj | None:
        key = (kind, namespace, name)
        if key not in self._objects:
            self.reads += 1
            try:
                self._objects[key] = await read(namespace, name)
            except Exception as e:
                self._objects[key] = e  # one failure per round, not one per pod
        got = self._objects[key]
        if isinstance(got, BaseException):
            raise got
        return got


class RefreshSources:
    """The VolumeSources of one pod during a round: reads through the round's cache, tokens through
    the token cache; ``inner`` (the agent's ApiVolumeSources) does the API calls."""

    def __init__(self, inner: VolumeSources, uid: str, objects: RoundCache, tokens: TokenCache) -> None:
        self.inner = inner
        self.uid = uid
        self.objects = objects
        self.tokens = tokens
        self.downward: DownwardValues = inner.downward

    async def get_configmap(self, namespace: str, name: str) -> Obj | None:
        return await self.objects.get("configmap", namespace, name, self.inner.get_configmap)

    async def get_secret(self, namespace: str, name: str) -> Obj | None:
        return await self.objects.get("secret", namespace, name, self.inner.get_secret)

    async def request_token(self, audience: str | None, expiration: int) -> str:
        return await self.tokens.get((self.uid, audience, expiration), self.inner.request_token)


def token_sources(pod: Obj) -> list[tuple[str, str, str | None, int]]:
    """(volume, file path, audience, expiration) of each projected serviceAccountToken of the pod."""
    out = []
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        for src in (vol.get("projected") or {}).get("sources") or []:
            tp = src.get("serviceAccountToken")
            if tp is not None:
                out.append((vol["name"], tp.get("path", "token"), tp.get("audience") or None,
                            int(tp.get("expirationSeconds") or DEFAULT_TOKEN_EXPIRATION)))
    return out


def has_api_data(pod: Obj) -> bool:
    return any(volume_kind(v) in API_DATA_KINDS for v in (pod.get("spec") or {}).get("volumes") or [])


# ---- the loop -------------------------------------------------------------------------------------

class VolumeRefresher:
    """Runs the refresh rounds. The agent supplies what it knows through small callables:

    - ``pods()``: the pods to consider (the workers' newest objects);
    - ``syncing(uid)``: the pod's worker still syncs it (asked again right before any write);
    - ``pod_dir(uid)``, ``sources(pod)``: where its volumes live, how to read their sources;
    - ``on_error(pod, error)``: a volume could not be refreshed (its old files stay).
    """

    def __init__(self, *, clock: Clock, period: float, pods: Callable[[], Iterable[Obj | None]],
                 syncing: Callable[[str], bool], pod_dir: Callable[[str], Path],
                 sources: Callable[[Obj], VolumeSources], mounter: Mounter | None = None,
                 on_error: Callable[[Obj, VolumeError], Awaitable[None]] | None = None,
                 pod_timeout: float | None = None) -> None:
        self.clock = clock
        self.period = period
        self._pods = pods
        self._syncing = syncing
        self._pod_dir = pod_dir
        self._sources = sources
        self.mounter = mounter
        self._on_error = on_error
        self.pod_timeout = pod_timeout if pod_timeout is not None else max(period, 1.0)
        self.tokens = TokenCache(clock)
        self.last: RoundCache | None = None  # the last round's reads (tests, metrics)

    async def run(self) -> None:
        while True:
            await self.clock.sleep(self.period)
            try:
                await self.refresh_all()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a round's failure never stops the agent
                log.warning("volume refresh: %s", e)

    async def refresh_all(self) -> dict[str, list[str]]:
        """One round; returns pod uid -> names of the volumes whose files changed."""
        objects = RoundCache()
        self.last = objects
        pods = [p for p in self._pods() if p]
        self.tokens.retain(p["metadata"]["uid"] for p in pods)
        changed: dict[str, list[str]] = {}
        for pod in pods:
            uid = pod["metadata"]["uid"]
            if not has_api_data(pod) or not self._syncing(uid):
                continue
            try:
                res = await self._bounded(self.refresh_pod(pod, objects))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # one pod's trouble does not hold up the others
                log.warning("volume refresh of pod %s: %s", uid, e)
                continue
            if res is None:
                log.info("volume refresh of pod %s timed out after %.0fs", uid, self.pod_timeout)
                continue
            if res.changed:
                changed[uid] = res.changed
                log.info("pod %s: refreshed volumes %s", uid, ", ".join(res.changed))
            for err in res.errors:
                log.info("pod %s: %s", uid, err)
                if self._on_error is not None:
                    with contextlib.suppress(Exception):
                        await self._on_error(pod, err)
        return changed

    async def _bounded(self, coro: Awaitable[RefreshResult]) -> RefreshResult | None:
        """``coro``'s result, or None when it took longer than ``pod_timeout`` on the clock (cancelled
        then: it is only ever waiting on the API at that point, never halfway through a write)."""
        task = asyncio.ensure_future(coro)
        timer = asyncio.ensure_future(self.clock.sleep(self.pod_timeout))
        try:
            await asyncio.wait([task, timer], return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        return task.result() if not task.cancelled() else None

    async def refresh_pod(self, pod: Obj, objects: RoundCache | None = None) -> RefreshResult:
        uid = pod["metadata"]["uid"]
        pod_dir = self._pod_dir(uid)
        self._seed_tokens(pod, uid, pod_dir)
        sources = RefreshSources(self._sources(pod), uid, objects or RoundCache(), self.tokens)
        return await refresh_volumes(pod, pod_dir, sources=sources, mounter=self.mounter, clock=self.clock,
                                     proceed=lambda: self._syncing(uid))

    def _seed_tokens(self, pod: Obj, uid: str, pod_dir: Path) -> None:
        for vol_name, path, audience, expiration in token_sources(pod):
            key = (uid, audience, expiration)
            if self.tokens.peek(key) is not None:
                continue
            vol = next(v for v in pod["spec"]["volumes"] if v["name"] == vol_name)
            try:
                data = (describe_volume(vol, pod_dir).path / path).read_text()
            except (OSError, UnicodeDecodeError, VolumeError):
                continue
            self.tokens.seed(key, data)
