"""Errors of ``peapod build``: each is printed as one line by the CLI."""

from __future__ import annotations


class BuildError(Exception):
    """A build step failed (the message says which and why)."""


class ContainerfileError(BuildError):
    """The Containerfile is malformed: ``<file>:<line>: <message>``."""

    def __init__(self, message: str, *, line: int, path: str = "Containerfile") -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.line = line
        self.path = path
        self.reason = message
