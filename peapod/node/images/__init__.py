"""Image handling for the node agent: registry client, content store, safe unpack, overlay rootfs.

The agent talks to the :class:`ImageService` protocol; :class:`OciImageService` is the real one and
:class:`peapod.testing.fakes_images.FakeImageService` the fake.
"""

from .auth import Credentials, credentials_for, parse_challenges
from .errors import (
    DigestMismatchError,
    ImageError,
    ImageInUseError,
    ImageNeverPullError,
    ImageNotFoundError,
    ImagePullError,
    InvalidReferenceError,
    LayerTooLargeError,
    RegistryError,
    UnsafeLayerError,
    UnsupportedManifestError,
)
from .manifest import Platform, host_platform
from .model import Image, ImageConfig
from .reference import Reference, parse_reference
from .registry import RegistryClient, RegistryConfig
from .service import ImageService, OciImageService, PruneResult, PullPolicy, default_pull_policy
from .unpack import UnpackOptions

__all__ = [
    "Credentials",
    "DigestMismatchError",
    "Image",
    "ImageConfig",
    "ImageError",
    "ImageInUseError",
    "ImageNeverPullError",
    "ImageNotFoundError",
    "ImagePullError",
    "ImageService",
    "InvalidReferenceError",
    "LayerTooLargeError",
    "OciImageService",
    "Platform",
    "PruneResult",
    "PullPolicy",
    "Reference",
    "RegistryClient",
    "RegistryConfig",
    "RegistryError",
    "UnpackOptions",
    "UnsafeLayerError",
    "UnsupportedManifestError",
    "credentials_for",
    "default_pull_policy",
    "host_platform",
    "parse_challenges",
    "parse_reference",
]
