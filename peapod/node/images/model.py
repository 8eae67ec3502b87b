"""The ``Image`` record and the on-disk image index (``images.json``, replaced atomically)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .content import atomic_write_json


@dataclass(frozen=True)
class ImageConfig:
    """The parts of an OCI image config the runtime needs (``config`` in the config JSON)."""

    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    stop_signal: str = ""
    exposed_ports: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    volumes: tuple[str, ...] = ()

    @classmethod
    def from_config_json(cls, obj: dict[str, Any]) -> ImageConfig:
        c = obj.get("config") or {}
        if not isinstance(c, dict):
            c = {}

        def strings(value: Any) -> tuple[str, ...] | None:
            if value is None:
                return None
            if isinstance(value, str):
                return (value,)
            return tuple(str(v) for v in value)

        return cls(
            entrypoint=strings(c.get("Entrypoint")),
            cmd=strings(c.get("Cmd")),
            env=strings(c.get("Env")) or (),
            working_dir=str(c.get("WorkingDir") or ""),
            user=str(c.get("User") or ""),
            stop_signal=str(c.get("StopSignal") or ""),
            exposed_ports=tuple(sorted((c.get("ExposedPorts") or {}).keys())),
            labels={str(k): str(v) for k, v in (c.get("Labels") or {}).items()},
            volumes=tuple(sorted((c.get("Volumes") or {}).keys())),
        )


@dataclass(frozen=True)
class Image:
    """A locally stored image.

    ``id`` is the config digest (Docker's image ID); ``digest`` the platform manifest's digest.
    ``repo_digests`` are ``name@digest`` entries as the registry knows them (for a multi-arch image,
    the index digest). ``size`` is the uncompressed size of all layers.
    """

    id: str
    digest: str
    repo_tags: tuple[str, ...] = ()
    repo_digests: tuple[str, ...] = ()
    size: int = 0
    config: ImageConfig = field(default_factory=ImageConfig)
    diff_ids: tuple[str, ...] = ()
    chain_ids: tuple[str, ...] = ()
    layer_digests: tuple[str, ...] = ()
    """Digests of the stored (usually compressed) layer blobs, in manifest order."""
    manifest_media_type: str = ""
    os: str = "linux"
    architecture: str = ""
    created: str = ""

    @property
    def names(self) -> list[str]:
        """Every name the node reports for this image (NodeStatus.images[].names)."""
        return [*self.repo_digests, *self.repo_tags]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Image:
        cfg = obj.get("config") or {}
        config = ImageConfig(
            entrypoint=tuple(cfg["entrypoint"]) if cfg.get("entrypoint") is not None else None,
            cmd=tuple(cfg["cmd"]) if cfg.get("cmd") is not None else None,
            env=tuple(cfg.get("env") or ()),
            working_dir=cfg.get("working_dir", ""),
            user=cfg.get("user", ""),
            stop_signal=cfg.get("stop_signal", ""),
            exposed_ports=tuple(cfg.get("exposed_ports") or ()),
            labels=dict(cfg.get("labels") or {}),
            volumes=tuple(cfg.get("volumes") or ()),
        )
        return cls(
            id=obj["id"], digest=obj["digest"], repo_tags=tuple(obj.get("repo_tags") or ()),
            repo_digests=tuple(obj.get("repo_digests") or ()), size=int(obj.get("size") or 0),
            config=config, diff_ids=tuple(obj.get("diff_ids") or ()),
            chain_ids=tuple(obj.get("chain_ids") or ()), layer_digests=tuple(obj.get("layer_digests") or ()),
            manifest_media_type=obj.get("manifest_media_type", ""), os=obj.get("os", "linux"),
            architecture=obj.get("architecture", ""), created=obj.get("created", ""),
        )


class ImageIndex:
    """``images.json``: image id -> record. Every change rewrites the file with write+rename."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.images: dict[str, Image] = {}
        if self.path.exists():
            obj = json.loads(self.path.read_text())
            for rec in obj.get("images", []):
                img = Image.from_json(rec)
                self.images[img.id] = img

    def save(self) -> None:
        atomic_write_json(self.path, {"version": 1, "images": [i.to_json() for i in self.images.values()]})

    def put(self, image: Image) -> Image:
        """Add or merge ``image``; its tags move away from any other image (Docker semantics)."""
        old = self.images.get(image.id)
        if old is not None:
            image = replace(
                image,
                repo_tags=_union(old.repo_tags, image.repo_tags),
                repo_digests=_union(old.repo_digests, image.repo_digests),
            )
        for other_id, other in list(self.images.items()):
            if other_id == image.id:
                continue
            tags = tuple(t for t in other.repo_tags if t not in image.repo_tags)
            if tags != other.repo_tags:
                self.images[other_id] = replace(other, repo_tags=tags)
        self.images[image.id] = image
        self.save()
        return image

    def untag(self, image_id: str, tag: str) -> Image:
        img = self.images[image_id]
        img = replace(img, repo_tags=tuple(t for t in img.repo_tags if t != tag),
                      repo_digests=tuple(d for d in img.repo_digests
                                         if d.split("@", 1)[0] != tag.rsplit(":", 1)[0]
                                         or _other_tags_share_name(img, tag, d)))
        self.images[image_id] = img
        self.save()
        return img

    def delete(self, image_id: str) -> None:
        if self.images.pop(image_id, None) is not None:
            self.save()


def _other_tags_share_name(img: Image, removed_tag: str, repo_digest: str) -> bool:
    name = repo_digest.split("@", 1)[0]
    return any(t.rsplit(":", 1)[0] == name for t in img.repo_tags if t != removed_tag)


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*a, *b)))
