"""``peapod completion bash|zsh|tcsh``: a shell completion script generated from the argparse parser
(with shtab), so it always matches the commands and flags."""

from __future__ import annotations

import argparse
import sys

SHELLS = ("bash", "zsh", "tcsh")
USAGE = {
    "bash": "source <(peapod completion bash)   # or: peapod completion bash > /etc/bash_completion.d/peapod",
    "zsh": "peapod completion zsh > \"${fpath[1]}/_peapod\"   # then start a new shell",
    "tcsh": "eval `peapod completion tcsh`",
}


def _annotate(parser: argparse.ArgumentParser) -> None:
    """Complete paths where a flag takes one (directories for data dirs and build contexts)."""
    import shtab

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in {id(p): p for p in action.choices.values()}.values():
                _annotate(sub)
        elif action.dest in ("data_dir", "context", "example"):
            action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
        elif action.dest in ("file", "path", "kubeconfig"):
            action.complete = shtab.FILE  # type: ignore[attr-defined]


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    import shtab

    _annotate(parser)
    return shtab.complete(parser, shell=shell)


def run_completion(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    sys.stdout.write(completion_script(parser, args.shell).rstrip("\n") + "\n")
    return 0
