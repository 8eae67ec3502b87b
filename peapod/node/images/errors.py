"""Errors raised by the image subsystem.

The messages of :class:`ImagePullError` end up in a container's ``ErrImagePull`` waiting message, so
they carry the registry's own error text.
"""

from __future__ import annotations


class ImageError(Exception):
    """Base class for every image-handling error."""


class InvalidReferenceError(ImageError, ValueError):
    """An image reference that does not parse (kubelet: ``InvalidImageName``)."""


class RegistryError(ImageError):
    """A registry answered with an error (HTTP status and the OCI ``errors`` list)."""

    def __init__(self, message: str, *, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    @property
    def is_auth(self) -> bool:
        return self.status in (401, 403)

    @property
    def is_not_found(self) -> bool:
        return self.status == 404 or self.code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN")


class DigestMismatchError(ImageError):
    """Content did not hash to the digest it was asked for; it is never kept."""


class UnsupportedManifestError(ImageError):
    """A manifest media type (e.g. Docker schema 1) or platform we cannot run."""


class UnsafeLayerError(ImageError):
    """A layer tar tried to escape its root or break a limit; the unpack is abandoned."""


class LayerTooLargeError(UnsafeLayerError):
    """A layer (or one file in it) decompressed past the configured maximum."""


class ImagePullError(ImageError):
    """Pulling failed; ``str(err)`` is the message shown for ``ErrImagePull``."""

    reason = "ErrImagePull"


class ImageNeverPullError(ImageError):
    """``imagePullPolicy: Never`` and the image is not present (kubelet's ``ErrImageNeverPull``)."""

    reason = "ErrImageNeverPull"


class ImageNotFoundError(ImageError, KeyError):
    """No local image matches a reference."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return str(self.args[0]) if self.args else ""


class ImageInUseError(ImageError):
    """Removal refused because a prepared container rootfs still uses the image."""
