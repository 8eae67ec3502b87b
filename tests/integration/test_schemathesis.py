"""schemathesis against the served OpenAPI v3 document of the core group (/openapi/v3/api/v1).

For a few core operations (namespaced ConfigMaps, Pods create/get/list/patch/replace, Nodes), a bounded
number of requests generated from the schema go to the in-process server. Every answer must be below
500, a rejected request (4xx) and an accepted dry run must leave the store exactly as it was, and the
server must still answer afterwards. Half the generated requests are aimed at objects that exist
(their path parameters replaced), so they reach validation and patching, not just a 404.

The served document declares request bodies as ``*/*`` (as kube-apiserver does); schemathesis needs a
concrete media type to serialize a body, so the test's copy says ``application/json`` there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.integration.conftest import ServerThread

schemathesis = pytest.importorskip("schemathesis")

OPERATIONS = [
    "createCoreV1NamespacedConfigMap", "readCoreV1NamespacedConfigMap", "listCoreV1NamespacedConfigMap",
    "patchCoreV1NamespacedConfigMap", "replaceCoreV1NamespacedConfigMap",
    "createCoreV1NamespacedPod", "readCoreV1NamespacedPod", "listCoreV1NamespacedPod", "patchCoreV1NamespacedPod",
    "listCoreV1Node", "readCoreV1Node", "createCoreV1Node", "patchCoreV1Node",
]
EXAMPLES = 20  # per operation: ~10 s for all on an idle machine
EXISTING = {"namespace": "fuzz", "name": "target"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    srv = ServerThread(tmp_path_factory.mktemp("schemathesis"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _seed(url: str) -> None:
    s = requests.Session()
    for path, body in (
        ("/api/v1/namespaces", {"metadata": {"name": "fuzz"}}),
        ("/api/v1/namespaces/fuzz/configmaps", {"metadata": {"name": "target"}, "data": {"a": "b"}}),
        ("/api/v1/namespaces/fuzz/pods",
         {"metadata": {"name": "target"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        ("/api/v1/nodes", {"metadata": {"name": "target"}}),
    ):
        r = s.post(url + path, json=body, timeout=10)
        assert r.status_code in (201, 409), r.text


def _schema(url: str) -> Any:
    raw = requests.get(url + "/openapi/v3/api/v1", timeout=10).text
    doc = json.loads(raw.replace('"*/*"', '"application/json"'))
    return schemathesis.openapi.from_dict(doc)


def _operations(schema: Any) -> dict[str, Any]:
    ops = {}
    for result in schema.get_all_operations():
        op = result.ok()
        op_id = op.definition.raw.get("operationId")
        if op_id in OPERATIONS:
            ops[op_id] = op
    return ops


def _dump(server: ServerThread) -> dict[str, tuple[int, bytes]]:
    return server.call(server._dump())


def _runner(server: ServerThread, session: requests.Session, op_id: str, op: Any, counts: dict[int, int]) -> Any:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(), aim=st.booleans())
    def run(case: Any, aim: bool) -> None:
        if aim:
            case.path_parameters = {k: EXISTING[k] for k in (case.path_parameters or {}) if k in EXISTING}
        if case.query:
            case.query.pop("watch", None)  # a watch streams until its timeout: list requests only
        before = _dump(server)
        resp = case.call(base_url=server.url, session=session, timeout=10)
        code = resp.status_code
        counts[code] = counts.get(code, 0) + 1
        where = f"{op_id}: {case.as_curl_command()}"
        assert code < 500, f"{where}\n-> {code} {resp.text[:2000]}"
        if code >= 400 or "dryRun" in (case.query or {}):
            assert _dump(server) == before, f"{where}\n-> {code} changed the store"

    return run


def test_generated_requests_never_5xx_and_rejections_change_nothing(server: ServerThread) -> None:
    _seed(server.url)
    schema = _schema(server.url)
    ops = _operations(schema)
    assert sorted(ops) == sorted(OPERATIONS)
    session = requests.Session()
    seen: dict[str, dict[int, int]] = {}

    for op_id, op in ops.items():
        _runner(server, session, op_id, op, seen.setdefault(op_id, {}))()

    assert requests.get(server.url + "/healthz", timeout=10).text == "ok"
    # The requests reached the handlers: some were accepted, some refused by validation.
    codes = {c for per_op in seen.values() for c in per_op}
    assert {200, 201} & codes and {400, 422} & codes, seen


def test_schemathesis_reads_every_served_v3_document(server: ServerThread, tmp_path: Path) -> None:
    """Every group's document parses and yields operations (a spec error would show here)."""
    index = requests.get(server.url + "/openapi/v3", timeout=10).json()
    for path in index["paths"]:
        doc = requests.get(f"{server.url}/openapi/v3/{path}", timeout=10).json()
        schema = schemathesis.openapi.from_dict(doc)
        results = list(schema.get_all_operations())
        assert results, path
        for r in results:
            r.ok()  # raises on a broken operation
