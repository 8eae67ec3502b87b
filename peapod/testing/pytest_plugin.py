"""pytest plugin: real Kubernetes-compatible clusters for tests, one ``peapod up`` away.

Fixtures:

- ``peapod_cluster`` (session): a single-node cluster that runs pods, started once per test session
  in a temporary directory and removed with every trace at the end. An
  :class:`~peapod.testing.ephemeral.EphemeralCluster`: ``.kubeconfig``, ``.kubectl(*args)``,
  ``.api_client`` / ``.core_v1`` / ``.apps_v1`` (the official ``kubernetes`` client), ``.apply()``,
  ``.delete()``, ``.get()``, ``.wait()``, ``.wait_for()``.
- ``peapod_namespace`` (function): a fresh namespace in ``peapod_cluster``, deleted after the test.
- ``peapod_launcher`` (session): ``with peapod_launcher.start() as c:`` starts more clusters (of any
  fixture scope; ``command="server"`` for the control plane alone).
- ``peapod_settings`` (session): the options below; override it in a conftest to fix them in code.

Options (command line, or the ini key in brackets): ``--peapod-data-dir DIR`` [peapod_data_dir]
where data dirs are made (default: pytest's temporary directory); ``--peapod-allowed-registry HOST``
[peapod_allowed_registries] pull only from these registries (repeatable; default: any);
``--peapod-keep`` [peapod_keep] keep the data dirs (logs, state) after the session;
``--peapod-arg ARG`` [peapod_args] more ``peapod up`` flags; ``--peapod-startup-timeout S``
[peapod_startup_timeout].

Registered through the ``pytest11`` entry point ``peapod``; without it, ``-p peapod.testing.pytest_plugin``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from peapod.testing.ephemeral import EphemeralCluster, ephemeral_cluster

_namespaces = itertools.count()


@dataclass(frozen=True)
class PeapodSettings:
    """How the plugin starts clusters (from the command line and ini, see the module docstring)."""

    data_dir: Path | None = None
    allowed_registries: tuple[str, ...] = ()
    keep: bool = False
    extra_args: tuple[str, ...] = ()
    startup_timeout: float = 60.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("peapod", "peapod: ephemeral Kubernetes-compatible clusters")
    group.addoption("--peapod-data-dir", default=None, metavar="DIR",
                    help="make the clusters' data dirs under DIR (default: pytest's temporary directory)")
    group.addoption("--peapod-allowed-registry", action="append", default=None, metavar="HOST[:PORT]",
                    help="pull images only from these registries (repeatable; default: any)")
    group.addoption("--peapod-keep", action="store_true", default=None,
                    help="keep the clusters' data dirs (logs, state) after the session")
    group.addoption("--peapod-arg", action="append", default=None, metavar="ARG",
                    help="one more flag for `peapod up` (repeatable, e.g. --peapod-arg=--pod-security=restricted)")
    group.addoption("--peapod-startup-timeout", type=float, default=None, metavar="SECONDS",
                    help="how long a cluster may take to become ready (default: 60)")
    parser.addini("peapod_data_dir", "where the clusters' data dirs are made", default="")
    parser.addini("peapod_allowed_registries", "registries images may be pulled from (default: any)",
                  type="args", default=[])
    parser.addini("peapod_keep", "keep the clusters' data dirs after the session", type="bool", default=False)
    parser.addini("peapod_args", "more flags for `peapod up`", type="args", default=[])
    parser.addini("peapod_startup_timeout", "seconds a cluster may take to become ready", default="60")


def settings_from_config(config: pytest.Config) -> PeapodSettings:
    """Command line first, then ini. Works when the plugin's options are not registered (defaults)."""
    def opt(name: str) -> Any:
        return config.getoption(name, default=None)

    def ini(name: str, default: Any) -> Any:
        try:
            return config.getini(name)
        except ValueError:  # the plugin's ini keys are unknown: it was not loaded as a plugin
            return default

    data_dir = opt("peapod_data_dir") or ini("peapod_data_dir", "")
    registries = opt("peapod_allowed_registry") or ini("peapod_allowed_registries", [])
    keep = opt("peapod_keep")
    timeout = opt("peapod_startup_timeout")
    args = [*ini("peapod_args", []), *(opt("peapod_arg") or [])]
    return PeapodSettings(
        data_dir=Path(data_dir) if data_dir else None,
        allowed_registries=tuple(registries),
        keep=bool(ini("peapod_keep", False) if keep is None else keep),
        extra_args=tuple(a for arg in args for a in (shlex.split(arg) if " " in arg else [arg])),
        startup_timeout=float(ini("peapod_startup_timeout", "60") if timeout is None else timeout),
    )


class PeapodLauncher:
    """Starts ephemeral clusters with the session's settings (see :func:`ephemeral_cluster`)."""

    def __init__(self, settings: PeapodSettings, base_dir: Path) -> None:
        self.settings = settings
        self.base_dir = base_dir

    @contextlib.contextmanager
    def start(self, command: str = "up", **overrides: Any) -> Iterator[EphemeralCluster]:
        """``with launcher.start() as c:``; ``overrides`` replace settings fields for this cluster
        (``allowed_registries``, ``extra_args``, ``keep``, ``startup_timeout``) or set ``substitutions``."""
        substitutions = overrides.pop("substitutions", None)
        s = replace(self.settings, **overrides)
        with ephemeral_cluster(self.base_dir, command=command, allowed_registries=s.allowed_registries,
                               extra_args=s.extra_args, keep=s.keep, startup_timeout=s.startup_timeout,
                               substitutions=substitutions) as cluster:
            yield cluster


@pytest.fixture(scope="session")
def peapod_settings(pytestconfig: pytest.Config) -> PeapodSettings:
    """The plugin's options; override this fixture in a conftest.py to set them in code."""
    return settings_from_config(pytestconfig)


@pytest.fixture(scope="session")
def peapod_launcher(peapod_settings: PeapodSettings, tmp_path_factory: pytest.TempPathFactory) -> PeapodLauncher:
    """Starts clusters for fixtures of any scope: ``with peapod_launcher.start() as cluster: ...``."""
    base = peapod_settings.data_dir or tmp_path_factory.getbasetemp() / "peapod"
    return PeapodLauncher(peapod_settings, base)


@pytest.fixture(scope="session")
def peapod_cluster(peapod_launcher: PeapodLauncher) -> Iterator[EphemeralCluster]:
    """A single-node peapod cluster for the whole session (real pods; needs root, runc, conmon, CNI)."""
    with peapod_launcher.start() as cluster:
        yield cluster


@pytest.fixture
def peapod_namespace(peapod_cluster: EphemeralCluster) -> Iterator[str]:
    """A fresh namespace in ``peapod_cluster`` for one test; deleted (without waiting) afterwards."""
    name = peapod_cluster.create_namespace(f"test-{os.getpid() % 100000}-{next(_namespaces)}")
    yield name
    peapod_cluster.kubectl("delete", "namespace", name, "--wait=false")
