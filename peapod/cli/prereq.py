"""What ``peapod up`` needs on the machine, each missing piece reported as one line with its fix."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

CNI_DIRS = ("/usr/lib/cni", "/opt/cni/bin")


def missing_prerequisites(*, need_node: bool) -> list[str]:
    if not need_node:
        return []
    problems: list[str] = []
    if os.geteuid() != 0:
        problems.append(
            "running pods needs root: run `sudo peapod up ...` (or `peapod server` for the control plane only)"
        )
    for binary, package in (("runc", "runc"), ("conmon", "conmon"), ("catatonit", "catatonit")):
        if shutil.which(binary) is None and not Path(f"/usr/bin/{binary}").exists():
            problems.append(f"{binary} not found: install it with `apt-get install {package}` (or `make install`)")
    if not any(Path(d, "bridge").exists() for d in CNI_DIRS):
        problems.append(
            "CNI plugins not found in /usr/lib/cni: install them with "
            "`apt-get install containernetworking-plugins`"
        )
    if not Path("/sys/fs/cgroup").is_dir() or not (
        Path("/sys/fs/cgroup/memory").is_dir() or Path("/sys/fs/cgroup/cgroup.controllers").exists()
    ):
        problems.append("cgroups are not mounted at /sys/fs/cgroup: mount cgroup v1 or v2 there")
    return problems
