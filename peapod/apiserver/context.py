"""Everything a request handler needs, passed explicitly (no module singletons)."""

from __future__ import annotations

import random
import ssl
from dataclasses import dataclass, field
from typing import Any

from peapod.api.resources import REGISTRY, Registry
from peapod.apiserver.storage import Storage
from peapod.clock import Clock
from peapod.store.base import Store


@dataclass
class ApiContext:
    store: Store
    clock: Clock
    registry: Registry = field(default_factory=lambda: REGISTRY)
    server_address: str = "127.0.0.1:6443"
    version_info: dict[str, Any] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)
    # Upstream TLS and credentials for proxying pods/log|exec|attach|portforward to node agents.
    node_client_ssl: ssl.SSLContext | bool | None = None
    node_auth_header: str | None = None
    node_scheme: str = "https"
    watch_cache_capacity: int = 1024
    bookmark_interval: float = 60.0
    default_watch_timeout: float = 1800.0
    caches: Any = None  # WatchCaches, set when the app starts
    node_session: Any = None  # aiohttp.ClientSession for node proxying, set when the app starts
    # PodSecurity admission: the enforce level of namespaces without a pod-security label (--pod-security).
    pod_security_default: str = "baseline"
    # Service account token signer (serviceaccounts.install_token_signer); while None, ServiceAccount
    # admission adds no token volume to pods (an in-process server that cannot issue tokens).
    token_signer: Any = None
    # DefaultTolerationSeconds admission (--default-not-ready/unreachable-toleration-seconds).
    default_not_ready_toleration_seconds: int = 300
    default_unreachable_toleration_seconds: int = 300
    storage: Storage = field(init=False)

    def __post_init__(self) -> None:
        self.storage = Storage(self.store)
