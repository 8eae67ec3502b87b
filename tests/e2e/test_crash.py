"""Crash safety: writers create objects while the server is SIGKILLed again and again; every create
acknowledged with a 2xx is there after the restarts."""

from __future__ import annotations

import json
import random
import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from peapod.testing.cluster import PeapodCluster


def _writer(cluster: PeapodCluster, token: str, prefix: str, acked: list[str], stop: threading.Event) -> None:
    ctx = ssl.create_default_context(cafile=str(cluster.data_dir / "tls" / "ca.crt"))
    i = 0
    while not stop.is_set():
        name = f"{prefix}-{i}"
        body = json.dumps({"metadata": {"name": name}, "data": {"i": str(i)}}).encode()
        req = urllib.request.Request(
            f"{cluster.url}/api/v1/namespaces/default/configmaps", data=body, method="POST",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=5) as r:
                if 200 <= r.status < 300:
                    acked.append(name)
                    i += 1
        except urllib.error.HTTPError as e:
            if e.code == 409:  # created before the crash but the answer was lost
                i += 1
        except OSError:
            time.sleep(0.05)


def test_acknowledged_creates_survive_sigkill(tmp_path: Path) -> None:
    cluster = PeapodCluster(tmp_path / "crash", command="server")
    cluster.start()
    token = cluster.admin_token()
    acked: list[list[str]] = [[] for _ in range(3)]
    stop = threading.Event()
    threads = [threading.Thread(target=_writer, args=(cluster, token, f"w{n}", acked[n], stop), daemon=True)
               for n in range(3)]
    for t in threads:
        t.start()
    rng = random.Random(7)
    try:
        for _ in range(5):
            time.sleep(rng.uniform(0.5, 1.5))
            cluster.kill()
            cluster.start()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    try:
        names = set(cluster.kubectl("get", "configmaps", "-o", "jsonpath={.items[*].metadata.name}",
                                    check=True).stdout.split())
        total = sum(len(a) for a in acked)
        assert total > 20, "writers made too little progress to prove anything"
        missing = [n for a in acked for n in a if n not in names]
        assert missing == [], f"{len(missing)} acknowledged creates lost of {total}"
    finally:
        cluster.stop()
