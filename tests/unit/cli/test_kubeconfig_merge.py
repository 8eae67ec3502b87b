"""`peapod kubeconfig --merge`: the admin kubeconfig into kubectl's config under a `peapod` context."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

from peapod.cli.kubeconfig import default_merge_target, make_kubeconfig, merge_into_file, merge_kubeconfig
from peapod.cli.main import main

SOURCE = make_kubeconfig("https://127.0.0.1:6443", b"CA", token="secret")
OTHER = {
    "apiVersion": "v1", "kind": "Config",
    "clusters": [{"name": "prod", "cluster": {"server": "https://prod:6443"}}],
    "users": [{"name": "me", "user": {"token": "t"}}],
    "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "me"}}],
    "current-context": "prod",
    "preferences": {"colors": True},
    "extensions": [{"name": "x", "extension": {}}],
}


def names(cfg: dict, key: str) -> list[str]:
    return [i["name"] for i in cfg[key]]


def test_into_nothing_it_becomes_current() -> None:
    out = merge_kubeconfig(None, SOURCE)
    assert names(out, "clusters") == ["peapod"] and names(out, "users") == ["peapod-admin"]
    assert out["contexts"] == [{"name": "peapod", "context": {"cluster": "peapod", "user": "peapod-admin",
                                                              "namespace": "default"}}]
    assert out["current-context"] == "peapod" and out["users"][0]["user"] == {"token": "secret"}


def test_everything_else_is_kept_and_the_current_context_too() -> None:
    out = merge_kubeconfig(OTHER, SOURCE)
    assert names(out, "clusters") == ["prod", "peapod"] and names(out, "contexts") == ["prod", "peapod"]
    assert out["current-context"] == "prod"
    assert out["preferences"] == {"colors": True} and out["extensions"] == OTHER["extensions"]
    assert OTHER["clusters"] == [{"name": "prod", "cluster": {"server": "https://prod:6443"}}]  # not mutated


def test_an_older_peapod_entry_is_replaced() -> None:
    first = merge_kubeconfig(OTHER, SOURCE)
    newer = make_kubeconfig("https://127.0.0.1:7443", b"CA2", token="new")
    out = merge_kubeconfig(first, newer, set_current=True)
    assert names(out, "clusters") == ["prod", "peapod"] and names(out, "users") == ["me", "peapod-admin"]
    assert out["clusters"][1]["cluster"]["server"] == "https://127.0.0.1:7443"
    assert out["users"][1]["user"] == {"token": "new"} and out["current-context"] == "peapod"


def test_another_name() -> None:
    out = merge_kubeconfig(merge_kubeconfig(OTHER, SOURCE), SOURCE, name="lab")
    assert names(out, "contexts") == ["prod", "peapod", "lab"]
    assert out["contexts"][2]["context"]["cluster"] == "lab" and names(out, "users")[2] == "lab-admin"


def test_the_file_is_private_and_keeps_its_owner(tmp_path: Path) -> None:
    target = tmp_path / "kube" / "config"
    target.parent.mkdir()
    target.write_text(yaml.safe_dump(OTHER))
    os.chmod(target, 0o644)
    if os.geteuid() == 0:
        os.chown(target, 1234, 1234)
    assert merge_into_file(target, SOURCE, set_current=True) == "peapod"
    st = target.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (1234, 1234)
    assert names(yaml.safe_load(target.read_text()), "contexts") == ["prod", "peapod"]


def test_a_symlinked_config_is_updated_where_it_lives(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_text(yaml.safe_dump(OTHER))
    link = tmp_path / "config"
    link.symlink_to(real)
    merge_into_file(link, SOURCE)
    assert link.is_symlink() and "peapod" in names(yaml.safe_load(real.read_text()), "contexts")


def test_a_broken_config_is_not_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.write_text("clusters: [\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        merge_into_file(target, SOURCE)
    assert target.read_text() == "clusters: [\n"


def test_the_target_follows_kubectl() -> None:
    home = Path("/home/u")
    assert default_merge_target({}, home) == home / ".kube" / "config"
    assert default_merge_target({"KUBECONFIG": ":/a/one:/b/two"}, home) == Path("/a/one")


def test_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    assert main(["kubeconfig", "--data-dir", str(data), "--merge"]) == 1
    assert "no kubeconfig in" in capsys.readouterr().err
    data.mkdir()
    (data / "kubeconfig").write_text(yaml.safe_dump(SOURCE))
    target = tmp_path / "home" / "config"
    monkeypatch.setenv("KUBECONFIG", str(target))
    assert main(["kubeconfig", "--data-dir", str(data), "--merge", "--context", "dev", "--set-current"]) == 0
    assert "merged context 'dev'" in capsys.readouterr().out
    cfg = yaml.safe_load(target.read_text())
    assert cfg["current-context"] == "dev" and names(cfg, "users") == ["dev-admin"]
    assert main(["kubeconfig", "--data-dir", str(data)]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == SOURCE
    assert main(["kubeconfig", "--data-dir", str(data), "--context", "x"]) == 0
    assert names(yaml.safe_load(capsys.readouterr().out), "contexts") == ["x"]
