"""`peapod completion`: scripts generated from the parser, and bash really completes with them."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from peapod.cli.completion import completion_script
from peapod.cli.main import build_parser, main


def complete_in_bash(script: str, words: list[str]) -> list[str]:
    """What bash offers for the last of ``words`` with the script loaded."""
    quoted = " ".join(f"'{w}'" for w in words)
    prog = f"""{script}
COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}; COMP_LINE="{' '.join(words)}"; COMP_POINT=${{#COMP_LINE}}
_shtab_peapod peapod '{words[-1]}' '{words[-2]}'
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    r = subprocess.run(["bash", "--norc", "-c", prog], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return sorted(w.strip() for w in r.stdout.split())


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_commands_and_flags() -> None:
    script = completion_script(build_parser(), "bash")
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0
    assert complete_in_bash(script, ["peapod", "ku"]) == ["kubeconfig"]
    assert {"run-example", "up", "build", "completion"} <= set(complete_in_bash(script, ["peapod", ""]))
    assert complete_in_bash(script, ["peapod", "kubeconfig", "--se"]) == ["--set-current"]
    assert complete_in_bash(script, ["peapod", "completion", ""]) == ["bash", "tcsh", "zsh"]


def test_zsh_script_names_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#compdef peapod")
    for word in ("run-example", "kubeconfig", "--merge", "--data-dir"):
        assert word in script
