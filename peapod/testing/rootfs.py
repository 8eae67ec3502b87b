"""A minimal container root filesystem built from the host's static busybox, for real-runtime tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX = "/bin/busybox"

PASSWD = """root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
user:x:1000:1000:user:/home/user:/bin/sh
"""
GROUP = """root:x:0:
nogroup:x:65534:
user:x:1000:
"""


def build_busybox_rootfs(dest: str | Path, *, busybox: str = BUSYBOX) -> Path:
    """Create ``dest`` as a rootfs: /bin/busybox (static), one symlink per applet, /etc/passwd, /etc/group.

    Only a statically linked busybox works (Debian's ``busybox-static``): the rootfs has no libc.
    """
    root = Path(dest)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
              "home/user", "var/www", "run"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2(busybox, root / "bin" / "busybox")
    applets = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True).stdout
    for rel in applets.split():
        link = root / rel
        if link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    os.chown(root / "home" / "user", 1000, 1000)
    return root
