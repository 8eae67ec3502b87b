"""The Containerfile parser: continuations, comments, directives, flags, JSON vs shell form, errors."""

from __future__ import annotations

import pytest

from peapod.build.containerfile import parse
from peapod.build.errors import ContainerfileError


def test_continuations_comments_and_line_numbers() -> None:
    cf = parse(
        "# leading comment\n"
        "FROM busybox\n"
        "\n"
        "RUN echo a && \\\n"
        "    # a comment inside the continuation is dropped\n"
        "\n"
        "    echo b\n"
        "env A=1\n"
    )
    assert [(i.cmd, i.line) for i in cf.instructions] == [("FROM", 2), ("RUN", 4), ("ENV", 8)]
    run = cf.instructions[1]
    assert run.args == "echo a &&     echo b"
    assert run.original == "RUN echo a && echo b"
    assert run.json is None


def test_escape_directive_uses_backtick() -> None:
    cf = parse("# escape=`\nFROM scratch\nRUN dir c:\\ `\n  && echo x\n")
    assert cf.escape == "`"
    assert cf.instructions[1].args == "dir c:\\   && echo x"


def test_directive_after_a_comment_is_a_comment() -> None:
    cf = parse("# hello\n# escape=`\nFROM scratch\n")
    assert cf.escape == "\\"


def test_json_and_shell_forms() -> None:
    cf = parse('FROM scratch\nCMD ["echo", "a b"]\nENTRYPOINT echo hi\nRUN [not json\nCMD ["a", 1]\n')
    cmd, entry, run, bad = cf.instructions[1:]
    assert cmd.json == ["echo", "a b"]
    assert entry.json is None and entry.args == "echo hi"
    assert run.json is None and run.args == "[not json"
    assert bad.json is None  # not all strings: the shell form, like Docker


def test_flags_are_split_off() -> None:
    cf = parse("FROM --platform=linux/amd64 busybox\nCOPY --chown=1:2 --chmod=755 a /b\nRUN --network=host x\n")
    assert cf.instructions[0].flags == {"platform": "linux/amd64"}
    assert cf.instructions[1].flags == {"chown": "1:2", "chmod": "755"}
    assert cf.instructions[1].args == "a /b"
    assert cf.instructions[2].flags == {"network": "host"}


@pytest.mark.parametrize(("text", "line", "message"), [
    ("FROM scratch\nRUNN x\n", 2, "unknown instruction: RUNN"),
    ("FROM scratch\n\nCOPY --owner=1 a b\n", 3, "unknown flag: --owner for COPY"),
    ("FROM scratch\nWORKDIR\n", 2, "WORKDIR requires at least one argument"),
    ("RUN echo\n", 1, "the first instruction must be FROM"),
    ("# only a comment\n", 1, "file with no instructions"),
    ("FROM scratch\nRUN <<EOF\nx\nEOF\n", 2, "heredocs are not supported"),
    ("# escape=x\nFROM scratch\n", 1, "invalid escape token"),
])
def test_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ContainerfileError) as info:
        parse(text, path="Dockerfile")
    assert info.value.line == line
    assert str(info.value).startswith(f"Dockerfile:{line}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_arg_may_come_before_from_and_keywords_are_case_insensitive() -> None:
    cf = parse("ARG V=1\nfrom busybox:$V\nWorkDir /x\n")
    assert [i.cmd for i in cf.instructions] == ["ARG", "FROM", "WORKDIR"]
