"""Build context sources: resolution, ignore files, and the input digest of the cache key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from peapod.build.context import Ignore, resolve_sources, sources_digest
from peapod.build.errors import BuildError


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print(1)\n")
    (tmp_path / "app" / "x.log").write_text("log")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    return tmp_path


def digest(ctx: Path, *patterns: str, ignore: Ignore | None = None) -> str:
    ig = ignore or Ignore()
    return sources_digest(resolve_sources(ctx, list(patterns), ig), ig, ctx)


def test_wildcards_and_missing(ctx: Path) -> None:
    assert [s.rel for s in resolve_sources(ctx, ["*.txt"], Ignore())] == ["a.txt", "b.txt"]
    with pytest.raises(BuildError, match="no such file"):
        resolve_sources(ctx, ["nope"], Ignore())
    with pytest.raises(BuildError, match="nothing matches"):
        resolve_sources(ctx, ["*.md"], Ignore())


def test_paths_outside_the_context_are_refused(ctx: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret").write_text("s")
    os.symlink(outside / "secret", ctx / "link")
    with pytest.raises(BuildError, match="outside the build context"):
        resolve_sources(ctx, ["../secret"], Ignore())
    with pytest.raises(BuildError, match="outside the build context"):
        resolve_sources(ctx, ["link"], Ignore())


def test_digest_follows_content_and_mode_not_time(ctx: Path) -> None:
    before = digest(ctx, "app")
    os.utime(ctx / "app" / "main.py", (1, 1))
    assert digest(ctx, "app") == before
    (ctx / "app" / "main.py").write_text("print(2)\n")
    changed = digest(ctx, "app")
    assert changed != before
    os.chmod(ctx / "app" / "main.py", 0o755)
    assert digest(ctx, "app") != changed


def test_ignore_file(ctx: Path) -> None:
    (ctx / ".dockerignore").write_text("# logs\n*.log\napp/*.log\n!b.txt\n")
    ig = Ignore.load(ctx)
    assert ig.excluded("app/x.log") and not ig.excluded("app/main.py") and not ig.excluded("b.txt")
    ignored_before = digest(ctx, "app", ignore=ig)
    counted_before = digest(ctx, "app")
    (ctx / "app" / "x.log").write_text("changed")
    assert digest(ctx, "app", ignore=ig) == ignored_before  # an ignored file does not bust the cache
    assert digest(ctx, "app") != counted_before
