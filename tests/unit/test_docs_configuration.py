"""docs/configuration.md is generated from the `peapod` argument parser: it must match what
`peapod <command> --help` says today (regenerate with `.venv/bin/python docs/gen_configuration.py`)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from peapod.cli.main import build_parser

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _generator():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("gen_configuration", DOCS / "gen_configuration.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_page_is_up_to_date() -> None:
    page = (DOCS / "configuration.md").read_text()
    assert page == _generator().render(), (
        "docs/configuration.md is out of date with `peapod --help`: run .venv/bin/python docs/gen_configuration.py")


def test_every_flag_of_every_help_output_is_documented_in_its_section() -> None:
    """Independent of the generator: walk `peapod <command> [<verb>] --help` and find each flag in the
    page's section for that command."""
    gen = _generator()
    page = (DOCS / "configuration.md").read_text()
    sections = dict(re.findall(r"^## `([^`]+)`\n(.*?)(?=^## |\Z)", page, flags=re.M | re.S))

    def walk(path: list[str], parser) -> int:  # type: ignore[no-untyped-def]
        option_lines = re.findall(r"^  (-\S.*?)(?:  |$)", parser.format_help(), flags=re.M)
        flags = {f.split()[0] for line in option_lines for f in line.split(", ")} - {"-h", "--help"}
        assert " ".join(path) in sections, f"no section for `{' '.join(path)}`"
        body = sections[" ".join(path)]
        missing = sorted(f for f in flags if f"`{f}`" not in body)
        assert not missing, f"`{' '.join(path)} --help` flags missing from docs/configuration.md: {missing}"
        return 1 + sum(walk([*path, name], sub) for name, _, sub in gen.subcommands(parser))

    assert walk(["peapod"], build_parser()) > 10


def test_check_mode_reports_a_stale_page(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    gen = _generator()
    stale = tmp_path / "configuration.md"
    stale.write_text("# old\n")
    monkeypatch.setattr(gen, "PAGE", stale)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0
