"""The pytest plugin (peapod.testing.pytest_plugin) as a user meets it: a test file of theirs using the
``peapod_cluster`` fixture, run by pytest in a subprocess (pytester), against a real `peapod up`."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from peapod.testing.ephemeral import mounts_under
from peapod.testing.pytest_plugin import PeapodSettings, settings_from_config
from peapod.testing.registry import LoopbackRegistry

pytest_plugins = ["pytester"]

ROOT = subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() == "0"

USER_TESTS = '''
import json, os

POD = """
apiVersion: v1
kind: Pod
metadata: {name: hello}
spec:
  restartPolicy: Never
  containers:
  - name: hello
    image: IMAGE
    command: [sh, -c, "echo hello from peapod"]
"""


def test_configmap_through_both_clients(peapod_cluster, peapod_namespace):
    peapod_cluster.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
                          "data": {"color": "blue"}}, namespace=peapod_namespace)
    cm = peapod_cluster.core_v1.read_namespaced_config_map("settings", peapod_namespace)
    assert cm.data == {"color": "blue"}
    got = peapod_cluster.kubectl("get", "configmap", "settings", "-n", peapod_namespace,
                                 "-o", "jsonpath={.data.color}", check=True)
    assert got.stdout == "blue"


def test_pod_runs(peapod_cluster, peapod_namespace):
    with open(os.environ["PEAPOD_SELFTEST_RECORD"], "w") as f:
        json.dump({"data_dir": str(peapod_cluster.data_dir), "bridge": peapod_cluster.bridge,
                   "kubeconfig": str(peapod_cluster.kubeconfig)}, f)
    peapod_cluster.apply(POD, namespace=peapod_namespace, substitutions={"IMAGE": os.environ["PEAPOD_SELFTEST_IMAGE"]})
    peapod_cluster.wait("pod/hello", "jsonpath={.status.phase}=Succeeded", namespace=peapod_namespace)
    assert peapod_cluster.core_v1.read_namespaced_pod_log("hello", peapod_namespace) == "hello from peapod\\n"


def test_a_failure_is_reported(peapod_cluster):
    assert peapod_cluster.get("namespace", "default")["metadata"]["name"] == "not-default"
'''


def plugin_args() -> list[str]:
    """Nothing when the ``pytest11`` entry point is installed (as users get it), else ``-p`` the module."""
    installed = any(ep.value == "peapod.testing.pytest_plugin" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "peapod.testing.pytest_plugin"]


@pytest.mark.skipif(not ROOT, reason="needs root")
def test_user_test_file_runs_on_the_fixture_and_leaves_no_trace(
        pytester: pytest.Pytester, registry: LoopbackRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    record = pytester.path / "record.json"
    monkeypatch.setenv("PEAPOD_SELFTEST_RECORD", str(record))
    monkeypatch.setenv("PEAPOD_SELFTEST_IMAGE", registry.ref("busybox", "1"))
    base = Path(tempfile.mkdtemp(prefix="pp-"))
    try:
        result = pytester.runpytest_subprocess(
            *plugin_args(), "-p", "no:cacheprovider", f"--peapod-data-dir={base}",
            "--peapod-allowed-registry=127.0.0.1", "-v", timeout=240)
        result.assert_outcomes(passed=2, failed=1)
        result.stdout.fnmatch_lines(["*test_a_failure_is_reported FAILED*", "*not-default*"])
        seen = json.loads(record.read_text())
        assert Path(seen["data_dir"]).parent == base
        assert list(base.iterdir()) == [], "the cluster's data dir is removed"
        assert not Path("/sys/class/net", seen["bridge"]).exists(), "the cluster's bridge is removed"
        assert mounts_under(base) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_help_lists_the_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(*plugin_args(), "--help")
    result.stdout.fnmatch_lines(["*peapod: ephemeral Kubernetes-compatible clusters*", "*--peapod-data-dir=DIR*",
                                 "*--peapod-allowed-registry=HOST*", "*--peapod-keep*"])


def test_settings_from_command_line_and_ini(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\npeapod_allowed_registries = 127.0.0.1 localhost\npeapod_keep = true\n"
                     "peapod_args = --pod-security=restricted\n")
    pytester.makeconftest(
        "import json\nfrom peapod.testing.pytest_plugin import settings_from_config\n"
        "def pytest_configure(config):\n"
        "    s = settings_from_config(config)\n"
        "    print('SETTINGS', json.dumps({'dir': str(s.data_dir), 'reg': s.allowed_registries, 'keep': s.keep,"
        " 'args': s.extra_args, 'timeout': s.startup_timeout}))\n")
    result = pytester.runpytest_subprocess(*plugin_args(), "-s", "--peapod-data-dir=/srv/pp",
                                           "--peapod-arg=--log-level=debug", "--peapod-startup-timeout=9")
    line = next(ln for ln in result.outlines if ln.startswith("SETTINGS"))
    assert json.loads(line.removeprefix("SETTINGS ")) == {
        "dir": "/srv/pp", "reg": ["127.0.0.1", "localhost"], "keep": True,
        "args": ["--pod-security=restricted", "--log-level=debug"], "timeout": 9.0}


def test_settings_without_the_plugin_loaded_are_the_defaults(pytestconfig: pytest.Config) -> None:
    """The e2e conftest imports the fixtures; the options' defaults must work even when the plugin is not
    registered (no entry point installed): no ValueError for unknown options or ini keys."""
    class Bare:
        def getoption(self, name: str, default: object = None) -> object:
            return default

        def getini(self, name: str) -> object:
            raise ValueError(f"unknown configuration value: {name!r}")

    assert settings_from_config(Bare()) == PeapodSettings()  # type: ignore[arg-type]
