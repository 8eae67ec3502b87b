"""Headers the API server passes on to the node agent."""

from __future__ import annotations

from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict

from peapod.apiserver.context import ApiContext
from peapod.apiserver.nodeproxy import _forward_headers


def test_repeated_stream_protocol_headers_are_all_passed_on_and_spoofed_identity_dropped() -> None:
    headers = CIMultiDict([
        ("X-Stream-Protocol-Version", "v4.channel.k8s.io"), ("X-Stream-Protocol-Version", "v3.channel.k8s.io"),
        ("X-Stream-Protocol-Version", "channel.k8s.io"), ("Authorization", "Bearer user-token"),
        ("X-Remote-User", "system:admin"), ("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"),
    ])
    req = make_mocked_request("POST", "/api/v1/namespaces/d/pods/p/exec", headers=headers)
    req["user"] = {"username": "alice"}
    ctx = ApiContext.__new__(ApiContext)
    ctx.node_auth_header = None
    out = _forward_headers(ctx, req)
    assert [v for k, v in out if k.lower() == "x-stream-protocol-version"] == [
        "v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"]
    assert [v for k, v in out if k.lower() == "x-remote-user"] == ["alice"]
    assert not [k for k, _ in out if k.lower() in ("authorization", "connection", "upgrade")]
