"""Image references parsed the way Docker does (``distribution/reference``'s normalized names).

``busybox`` -> ``docker.io/library/busybox:latest``; ``localhost:5000/app@sha256:...`` keeps its
registry; a reference with a digest gets no default tag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .errors import InvalidReferenceError

DEFAULT_REGISTRY = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
_LEGACY_HUB_NAMES = {"index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"}

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$"
)
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
_ID = re.compile(r"^(?:sha256:)?[a-f0-9]{64}$")
_MAX_NAME = 255


@dataclass(frozen=True)
class Reference:
    """A normalized image reference. ``tag`` is None only when a digest was given."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest (Docker's ``Name()``)."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """Host (and port) the distribution API is served on."""
        return DOCKER_HUB_API_HOST if self.registry == DEFAULT_REGISTRY else self.registry

    @property
    def reference(self) -> str:
        """What to put after ``/manifests/``: the digest when known, else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, tag=None, digest=digest)

    def familiar(self) -> str:
        """The short form Docker prints: ``busybox:latest``, ``localhost:5000/app:v1``."""
        name = self.repository
        if self.registry == DEFAULT_REGISTRY:
            if name.startswith("library/") and name.count("/") == 1:
                name = name[len("library/"):]
            first = name.split("/", 1)[0]
            if "/" in name and (any(c in first for c in ".:") or first == "localhost"):
                # Shortened, the first component would be read as a registry: keep docker.io.
                name = f"{self.registry}/{name}"
        else:
            name = f"{self.registry}/{name}"
        return _suffix(name, self.tag, self.digest)

    def __str__(self) -> str:
        return _suffix(self.name, self.tag, self.digest)


def _suffix(name: str, tag: str | None, digest: str | None) -> str:
    out = name
    if tag:
        out += f":{tag}"
    if digest:
        out += f"@{digest}"
    return out


def is_image_id(text: str) -> bool:
    """True for a bare 64-hex image id or ``sha256:<hex>`` (never a name)."""
    return bool(_ID.match(text))


def parse_reference(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse and normalize ``text``; raise :class:`InvalidReferenceError` if it is not a reference."""
    if not text or text != text.strip():
        raise InvalidReferenceError(f"invalid reference format: {text!r}")
    remainder, digest = text, None
    if "@" in remainder:
        remainder, digest = remainder.split("@", 1)
        if not _DIGEST.match(digest):
            raise InvalidReferenceError(f"invalid reference format: bad digest in {text!r}")
    tag = None
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidReferenceError(f"invalid reference format: bad tag in {text!r}")
    registry, repository = _split_domain(remainder, text)
    if len(registry) + 1 + len(repository) > _MAX_NAME:
        raise InvalidReferenceError(f"invalid reference format: repository name too long: {text!r}")
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry=registry, repository=repository, tag=tag, digest=digest)


def _split_domain(name: str, original: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        registry, repository = first, rest
        if not _DOMAIN.match(registry):
            raise InvalidReferenceError(f"invalid reference format: bad registry in {original!r}")
    else:
        registry, repository = DEFAULT_REGISTRY, name
    if registry in _LEGACY_HUB_NAMES:
        registry = DEFAULT_REGISTRY
    if not repository:
        raise InvalidReferenceError(f"invalid reference format: {original!r}")
    for part in repository.split("/"):
        if not _PATH_COMPONENT.match(part):
            if part.lower() != part:
                raise InvalidReferenceError(
                    f"invalid reference format: repository name must be lowercase: {original!r}"
                )
            raise InvalidReferenceError(f"invalid reference format: {original!r}")
    if registry == DEFAULT_REGISTRY and "/" not in repository:
        repository = f"library/{repository}"
    return registry, repository
