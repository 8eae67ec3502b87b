"""The pure parts of the admission step: which pod updates are re-checked, which pods first."""

from __future__ import annotations

from typing import Any

from peapod.apiserver.admission import _prioritize, _significant_pod_update


def pod(image: str = "a", eph: list[dict[str, Any]] | None = None, **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": image}]}
    if eph is not None:
        spec["ephemeralContainers"] = eph
    return {"metadata": meta, "spec": spec}


def test_significant_pod_updates() -> None:
    assert not _significant_pod_update(pod(labels={"x": "y"}), pod())
    assert _significant_pod_update(pod("b"), pod("a"))
    assert _significant_pod_update(pod(eph=[{"name": "d", "image": "x"}]), pod())
    assert not _significant_pod_update(pod(eph=[{"name": "d", "image": "x"}]), pod(eph=[{"name": "d", "image": "x"}]))
    more = pod()
    more["spec"]["containers"].append({"name": "d", "image": "x"})
    assert _significant_pod_update(more, pod())


def test_prioritize_one_pod_per_controller_first() -> None:
    def owned(name: str, uid: str | None) -> dict[str, Any]:
        refs = [{"uid": uid, "controller": True}] if uid else []
        return {"metadata": {"name": name, "ownerReferences": refs}}

    pods = [owned("rs-a-1", "a"), owned("rs-a-2", "a"), owned("solo", None), owned("rs-b-1", "b")]
    assert [p["metadata"]["name"] for p in _prioritize(pods)] == ["rs-a-1", "solo", "rs-b-1", "rs-a-2"]


def test_cli_flag() -> None:
    import pytest

    from peapod.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["up"]).pod_security == "baseline"
    assert parser.parse_args(["server", "--pod-security", "restricted"]).pod_security == "restricted"
    with pytest.raises(SystemExit):
        parser.parse_args(["up", "--pod-security", "strict"])


def test_build_app_rejects_unknown_default() -> None:
    import pytest

    from peapod.apiserver.app import build_app
    from peapod.clock import RealClock

    with pytest.raises(ValueError, match="pod_security_default"):
        build_app(store=None, clock=RealClock(), pod_security_default="strict")  # type: ignore[arg-type]
    app = build_app(store=None, clock=RealClock(), pod_security_default="privileged")  # type: ignore[arg-type]
    from peapod.apiserver.app import CTX

    assert app[CTX].pod_security_default == "privileged"
