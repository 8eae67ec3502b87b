"""Parse a Containerfile/Dockerfile into instructions (no expansion: that happens while building).

Follows Docker's rules: a ``# escape=`` parser directive on top, ``#`` comment lines (also inside
continued lines), the escape character (``\\`` or a backtick) at the end of a line continues it,
keywords are case-insensitive, ``--flag=value`` options come first, and an argument that parses as
a JSON array of strings is the exec form (anything else is the shell form).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .errors import ContainerfileError

KNOWN = frozenset({
    "FROM", "RUN", "CMD", "ENTRYPOINT", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "EXPOSE",
    "LABEL", "STOPSIGNAL", "SHELL", "VOLUME", "MAINTAINER", "HEALTHCHECK", "ONBUILD",
})
# which flags each instruction accepts (Docker/BuildKit names)
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "COPY": frozenset({"chown", "chmod", "from", "link", "parents", "exclude"}),
    "ADD": frozenset({"chown", "chmod", "link", "checksum", "keep-git-dir", "exclude"}),
    "RUN": frozenset({"network", "mount", "security"}),
}
JSON_FORM = frozenset({"RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"})
NEEDS_ARGS = KNOWN - {"HEALTHCHECK"}
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_FLAG = re.compile(r"^--([a-z][a-z0-9-]*)(?:=(.*))?$")


@dataclass(frozen=True)
class Instruction:
    cmd: str
    """The keyword, upper case (``RUN``)."""
    args: str
    """The argument text after the flags, continuation lines joined (not expanded)."""
    line: int
    """The line number of the keyword (1-based)."""
    original: str
    """The instruction as written (continuations joined), for output and history."""
    flags: dict[str, str] = field(default_factory=dict)
    json: list[str] | None = None
    """The exec form's arguments when ``args`` is a JSON array of strings."""


@dataclass(frozen=True)
class Containerfile:
    instructions: list[Instruction]
    escape: str = "\\"
    path: str = "Containerfile"


def _directives(lines: list[str], path: str) -> tuple[str, int]:
    """The escape character and the index of the first line after the parser directives."""
    escape = "\\"
    seen: set[str] = set()
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i].strip())
        if not m:
            break
        name = m.group(1).lower()
        if name in seen:
            raise ContainerfileError(f"only one {name} parser directive can be used", line=i + 1, path=path)
        seen.add(name)
        if name == "escape":
            if m.group(2) not in ("\\", "`"):
                raise ContainerfileError(f"invalid escape token '{m.group(2)}' does not validate",
                                         line=i + 1, path=path)
            escape = m.group(2)
        elif name not in ("syntax", "check"):
            break  # an ordinary comment: directives end here
        i += 1
    return escape, i


def _split_flags(cmd: str, text: str, line: int, path: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    rest = text
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        m = _FLAG.match(word.strip())
        if not m:
            raise ContainerfileError(f"{cmd}: invalid flag {word!r}", line=line, path=path)
        name = m.group(1)
        if name not in FLAGS.get(cmd, frozenset()):
            raise ContainerfileError(f"unknown flag: --{name} for {cmd}", line=line, path=path)
        if m.group(2) is None and name not in ("link", "parents", "keep-git-dir"):
            raise ContainerfileError(f"{cmd}: flag --{name} needs a value (--{name}=VALUE)", line=line,
                                     path=path)
        flags[name] = m.group(2) if m.group(2) is not None else "true"
        rest = after.lstrip()
    return flags, rest


def _json_form(text: str) -> list[str] | None:
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def parse(text: str, *, path: str = "Containerfile") -> Containerfile:
    """Parse ``text``; raises :class:`ContainerfileError` naming the file and line."""
    lines = text.splitlines()
    escape, start = _directives(lines, path)
    out: list[Instruction] = []
    i = start
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        first = i
        parts: list[str] = []
        originals: list[str] = []
        while True:
            content = raw.rstrip()
            continued = content.endswith(escape)  # Docker: any trailing escape continues the line
            if continued:
                content = content[:-1]
            parts.append(content)
            originals.append(content.strip())
            i += 1
            if not continued:
                break
            # skip comment lines and empty lines inside a continued instruction (Docker does)
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1
            if i >= len(lines):
                break
            raw = lines[i]
        joined = "".join(parts).strip()
        original = " ".join(p for p in originals if p)
        keyword, _, rest = joined.partition(" ")
        if "\t" in keyword:
            keyword, _, more = keyword.partition("\t")
            rest = more + " " + rest
        cmd = keyword.upper()
        rest = rest.strip()
        if cmd not in KNOWN:
            raise ContainerfileError(f"unknown instruction: {keyword}", line=first + 1, path=path)
        flags, rest = _split_flags(cmd, rest, first + 1, path) if cmd in FLAGS else ({}, rest)
        if not rest and cmd in NEEDS_ARGS:
            raise ContainerfileError(f"{cmd} requires at least one argument", line=first + 1, path=path)
        form = _json_form(rest) if cmd in JSON_FORM else None
        if rest.startswith("<<") and cmd in ("RUN", "COPY", "ADD"):
            raise ContainerfileError(f"{cmd}: heredocs are not supported", line=first + 1, path=path)
        out.append(Instruction(cmd=cmd, args=rest, line=first + 1, original=original, flags=flags, json=form))
    if not out:
        raise ContainerfileError("file with no instructions", line=max(1, len(lines)), path=path)
    if out[0].cmd not in ("FROM", "ARG"):
        raise ContainerfileError(f"no build stage in current context: the first instruction must be FROM "
                                 f"(or ARG), not {out[0].cmd}", line=out[0].line, path=path)
    return Containerfile(out, escape=escape, path=path)

