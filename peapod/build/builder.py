"""``peapod build``: run a Containerfile's instructions and produce an OCI image.

Each COPY/ADD/RUN mounts an overlay of the layers so far plus a fresh upper dir, changes it (copies
files in, or runs the command in a container), and turns the upper dir into a layer
(:mod:`peapod.build.diff`). The other instructions only change the image config. A step whose
cache key (:mod:`peapod.build.cache`) was seen before reuses that layer (``---> Using cache``).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import posixpath
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from peapod.node.containerconfig import ConfigError, resolve_user
from peapod.node.images import Image, host_platform
from peapod.node.images.content import digest_bytes
from peapod.node.images.layers import chain_ids
from peapod.node.images.manifest import (
    DOCKER_LAYER,
    DOCKER_LAYER_GZIP,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
)
from peapod.node.images.reference import parse_reference

from . import context as ctx
from .cache import CachedLayer, cache_key
from .containerfile import Instruction, parse
from .diff import gzip_file, write_diff
from .errors import BuildError, ContainerfileError
from .runner import MOUNT_POINTS, RunSpec, StepRunner
from .store import BuildStore
from .words import WordError, expand_word, expand_words, key_value_pairs

DEFAULT_SHELL = ["/bin/sh", "-c"]
_MEDIA_TO_OCI = {DOCKER_LAYER_GZIP: OCI_LAYER_GZIP, DOCKER_LAYER: OCI_LAYER}
Say = Callable[[str], None]


@dataclass(frozen=True)
class LayerRef:
    diff_id: str
    digest: str
    size: int
    media_type: str


@dataclass
class BuildOptions:
    context: Path
    containerfile: Path
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    network: str = "none"
    no_cache: bool = False


@dataclass
class BuildResult:
    image_id: str
    manifest_digest: str
    manifest: bytes
    config: bytes
    names: list[str]
    blobs: dict[str, Path]
    """Every blob of the image (manifest, config, layers) in the build store."""


@dataclass
class _State:
    config: dict[str, Any]
    """The full OCI image config JSON (``config``, ``history``...); rootfs is rebuilt at the end."""
    layers: list[LayerRef]
    args: dict[str, str] = field(default_factory=dict)
    shell: list[str] = field(default_factory=lambda: list(DEFAULT_SHELL))
    cmd_set: bool = False
    created: str = ""

    @property
    def c(self) -> dict[str, Any]:
        return self.config.setdefault("config", {})

    @property
    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for e in self.c.get("Env") or []:
            k, _, v = e.partition("=")
            out[k] = v
        return out

    def set_env(self, key: str, value: str) -> None:
        env = self.env
        env[key] = value
        self.c["Env"] = [f"{k}={v}" for k, v in env.items()]

    @property
    def chain(self) -> str | None:
        ids = chain_ids([layer.diff_id for layer in self.layers])
        return ids[-1] if ids else None

    def vars(self) -> dict[str, str]:
        """Variables visible to expansion: ARGs, overridden by ENV (Docker's precedence)."""
        return {**self.args, **self.env}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Builder:
    def __init__(self, store: BuildStore, *, state_dir: Path, say: Say,
                 output: Callable[[bytes], None], progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.store = store
        self.say = say
        self.progress = progress
        self.runner = StepRunner(state_dir, output=output)

    async def build(self, opts: BuildOptions) -> BuildResult:
        try:
            text = opts.containerfile.read_text()
        except OSError as exc:
            raise BuildError(f"cannot read {opts.containerfile}: {exc.strerror or exc}") from None
        name = opts.containerfile.name
        cf = parse(text, path=name)
        await self.runner.remove_leftovers()
        self._cf_name, self._escape = name, cf.escape
        self._ignore = ctx.Ignore.load(opts.context)
        total = len(cf.instructions)
        global_args: dict[str, str] = {}
        state: _State | None = None
        used_args: set[str] = set()
        for n, ins in enumerate(cf.instructions, 1):
            self.say(f"STEP {n}/{total}: {ins.original}")
            try:
                if ins.cmd == "ARG" and state is None:
                    for key, value in self._arg_pairs(ins, global_args):
                        global_args[key] = opts.build_args.get(key, value) if key in opts.build_args \
                            else value
                        used_args.add(key)
                    continue
                if ins.cmd == "FROM":
                    if state is not None:
                        raise self._err(ins, "multi-stage builds (a second FROM) are not supported yet")
                    state = await self._from(ins, global_args)
                    continue
                assert state is not None
                if ins.cmd == "ARG":
                    for key, value in self._arg_pairs(ins, state.vars()):
                        if key in opts.build_args:
                            state.args[key] = opts.build_args[key]
                        elif value is not None:
                            state.args[key] = value
                        elif key in global_args:
                            state.args[key] = global_args[key]
                        else:
                            state.args.pop(key, None)
                        used_args.add(key)
                    self._history(state, ins, f"ARG {ins.args}", empty=True)
                    continue
                await self._step(state, ins, opts)
            except WordError as exc:
                raise self._err(ins, str(exc)) from None
        if state is None:
            raise ContainerfileError("no FROM instruction", line=cf.instructions[-1].line, path=name)
        unused = sorted(set(opts.build_args) - used_args)
        if unused:
            self.say(f"[Warning] one or more build-args {unused} were not consumed")
        return self._commit(state, opts)

    # -- helpers ------------------------------------------------------------------------------
    def _err(self, ins: Instruction, message: str) -> ContainerfileError:
        return ContainerfileError(message, line=ins.line, path=self._cf_name)

    def _word(self, ins: Instruction, text: str, env: dict[str, str]) -> str:
        return expand_word(text, env, self._escape)

    def _arg_pairs(self, ins: Instruction, env: dict[str, str]) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for word in expand_words(ins.args, env, self._escape):
            key, sep, value = word.partition("=")
            if not key or not all(c == "_" or c.isalnum() for c in key):
                raise self._err(ins, f"ARG: invalid name {key!r}")
            out.append((key, value if sep else None))
        return out

    def _history(self, state: _State, ins: Instruction, created_by: str, *, empty: bool) -> None:
        entry: dict[str, Any] = {"created": state.created or _now(), "created_by": created_by,
                                 "comment": "peapod build"}
        if empty:
            entry["empty_layer"] = True
        state.config.setdefault("history", []).append(entry)

    def _exec_or_shell(self, ins: Instruction, state: _State) -> list[str]:
        if ins.json is not None:
            return list(ins.json)
        return [*state.shell, ins.args]

    # -- FROM ---------------------------------------------------------------------------------
    async def _from(self, ins: Instruction, global_args: dict[str, str]) -> _State:
        words = expand_words(ins.args, global_args, self._escape)
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            raise self._err(ins, "FROM requires either one or three arguments (IMAGE [AS NAME])")
        plat = ins.flags.get("platform")
        if plat and plat != str(host_platform()) and plat.split("/")[:2] != str(host_platform()).split("/")[:2]:
            raise self._err(ins, f"--platform={plat} is not this node's platform {host_platform()}")
        ref = words[0]
        if ref == "scratch":
            cfg: dict[str, Any] = {"architecture": host_platform().architecture, "os": "linux",
                                   "config": {}, "history": []}
            state = _State(config=cfg, layers=[], args={})
            state.created = _now()
            return state
        try:
            parse_reference(ref)
        except ValueError as exc:
            raise self._err(ins, f"invalid image reference {ref!r}: {exc}") from None
        try:
            image = await self.store.base_image(ref, say=self.say, progress=self.progress)
        except BuildError:
            raise
        except Exception as exc:  # ImageError, OSError...: one line with the step
            raise BuildError(f"{self._cf_name}:{ins.line}: FROM {ref}: {exc}") from None
        return self._state_of(image)

    def _state_of(self, image: Image) -> _State:
        svc = self.store.images
        config = json.loads(svc.content.read(image.id))
        manifest = json.loads(svc.content.read(image.digest))
        layers = [LayerRef(diff, d["digest"], int(d["size"]), _MEDIA_TO_OCI.get(d["mediaType"], d["mediaType"]))
                  for diff, d in zip(image.diff_ids, manifest["layers"], strict=True)]
        for key in ("container", "container_config", "docker_version", "author"):
            config.pop(key, None)
        config.setdefault("config", {})
        history = config.get("history") or []
        state = _State(config=config, layers=layers)
        state.created = str(config.get("created") or (history[-1].get("created") if history else "") or _now())
        return state

    # -- one instruction ----------------------------------------------------------------------
    async def _step(self, state: _State, ins: Instruction, opts: BuildOptions) -> None:
        c = state.c
        v = state.vars()
        cmd = ins.cmd
        if cmd == "ENV":
            pairs = self._pairs(ins, v)
            for key, value in pairs:
                state.set_env(key, value)
            self._history(state, ins, "ENV " + " ".join(f"{k}={val}" for k, val in pairs), empty=True)
        elif cmd == "LABEL":
            pairs = self._pairs(ins, v)
            c.setdefault("Labels", {}).update(dict(pairs))
            self._history(state, ins, "LABEL " + " ".join(f"{k}={val}" for k, val in pairs), empty=True)
        elif cmd == "MAINTAINER":
            c.setdefault("Labels", {})["maintainer"] = ins.args
            self._history(state, ins, f"MAINTAINER {ins.args}", empty=True)
        elif cmd == "WORKDIR":
            path = self._word(ins, ins.args, v)
            c["WorkingDir"] = posixpath.normpath(posixpath.join(c.get("WorkingDir") or "/", path))
            self._history(state, ins, f"WORKDIR {c['WorkingDir']}", empty=True)
        elif cmd == "USER":
            c["User"] = self._word(ins, ins.args, v)
            self._history(state, ins, f"USER {c['User']}", empty=True)
        elif cmd == "EXPOSE":
            ports = c.setdefault("ExposedPorts", {})
            for p in expand_words(ins.args, v, self._escape):
                port, _, proto = p.partition("/")
                if not port.replace("-", "").isdigit() or proto not in ("", "tcp", "udp", "sctp"):
                    raise self._err(ins, f"EXPOSE: invalid port {p!r}")
                ports[f"{port}/{proto or 'tcp'}"] = {}
            self._history(state, ins, f"EXPOSE {ins.args}", empty=True)
        elif cmd == "STOPSIGNAL":
            c["StopSignal"] = self._word(ins, ins.args, v)
            self._history(state, ins, f"STOPSIGNAL {c['StopSignal']}", empty=True)
        elif cmd == "VOLUME":
            vols = ins.json if ins.json is not None else expand_words(ins.args, v, self._escape)
            for vol in vols:
                c.setdefault("Volumes", {})[vol] = {}
            self._history(state, ins, f"VOLUME {vols}", empty=True)
        elif cmd == "SHELL":
            if ins.json is None or not ins.json:
                raise self._err(ins, "SHELL requires the arguments to be in JSON form")
            state.shell = list(ins.json)
            self._history(state, ins, f"SHELL {json.dumps(ins.json)}", empty=True)
        elif cmd == "CMD":
            c["Cmd"] = self._exec_or_shell(ins, state)
            state.cmd_set = True
            self._history(state, ins, f"CMD {json.dumps(c['Cmd'])}", empty=True)
        elif cmd == "ENTRYPOINT":
            c["Entrypoint"] = self._exec_or_shell(ins, state)
            if not state.cmd_set:
                c.pop("Cmd", None)  # Docker: a base image's CMD does not survive a new ENTRYPOINT
            self._history(state, ins, f"ENTRYPOINT {json.dumps(c['Entrypoint'])}", empty=True)
        elif cmd in ("HEALTHCHECK", "ONBUILD"):
            self.say(f"WARN: {cmd} is not supported for the OCI image format and is ignored")
        elif cmd in ("COPY", "ADD"):
            await self._copy(state, ins, opts)
        elif cmd == "RUN":
            await self._run(state, ins, opts)
        else:  # pragma: no cover - the parser only yields known instructions
            raise self._err(ins, f"unknown instruction {cmd}")

    def _pairs(self, ins: Instruction, env: dict[str, str]) -> list[tuple[str, str]]:
        words = expand_words(ins.args, env, self._escape)
        if words and "=" not in words[0]:  # legacy "ENV key value with spaces"
            key, _, rest = ins.args.strip().partition(" ")
            if not rest.strip():
                raise self._err(ins, f"{ins.cmd} {key}: missing a value (use {ins.cmd} {key}=VALUE)")
            return [(key, self._word(ins, rest.strip(), env))]
        try:
            return key_value_pairs(words)
        except WordError as exc:
            raise self._err(ins, f"{ins.cmd}: {exc}") from None

    # -- layer steps ----------------------------------------------------------------------------
    async def _layer(self, state: _State, ins: Instruction, key: str, created_by: str,
                     change: Callable[[Path, int], Any], *, mount_points: bool = False,
                     no_cache: bool = False) -> None:
        svc = self.store.images
        hit = None if no_cache else self.store.cache.get(key)
        parent = state.chain
        if hit is not None and svc.content.has(hit.digest):
            new_chain = chain_ids([*(layer.diff_id for layer in state.layers), hit.diff_id])[-1]
            if not svc.layers.has(new_chain):
                await asyncio.to_thread(self._unpack, new_chain, parent, hit.diff_id, hit.digest)
            state.layers.append(LayerRef(hit.diff_id, hit.digest, hit.size, hit.media_type))
            state.created = hit.created
            self._history(state, ins, created_by, empty=False)
            self.say("---> Using cache " + hit.diff_id.split(":", 1)[1][:12])
            return
        cid = f"build-{uuid.uuid4().hex[:16]}"
        chains = chain_ids([layer.diff_id for layer in state.layers])
        merged = await asyncio.to_thread(svc.rootfs.prepare, cid, "build", chains)
        try:
            rootfd = os.open(merged, os.O_PATH | os.O_DIRECTORY)
            try:
                missing = {p for p in MOUNT_POINTS if not _exists_in_root(rootfd, p)} if mount_points else set()
                result = change(merged, rootfd)
                if asyncio.iscoroutine(result):
                    await result
            finally:
                os.close(rootfd)
            upper = svc.rootfs.dir(cid) / "upper"
            layer = await asyncio.to_thread(self._make_layer, upper, missing)
        finally:
            await asyncio.to_thread(svc.rootfs.release, cid)
        new_chain = chain_ids([*(x.diff_id for x in state.layers), layer.diff_id])[-1]
        await asyncio.to_thread(self._unpack, new_chain, parent, layer.diff_id, layer.digest)
        state.created = _now()
        self.store.cache.put(key, CachedLayer(layer.diff_id, layer.digest, layer.size, layer.media_type,
                                              state.created))
        state.layers.append(layer)
        self._history(state, ins, created_by, empty=False)
        self.say("---> " + layer.diff_id.split(":", 1)[1][:12])

    def _unpack(self, chain: str, parent: str | None, diff_id: str, digest: str) -> None:
        svc = self.store.images
        with svc.content.open(digest) as fh:
            svc.layers.add(chain, parent, diff_id, fh, svc.unpack_options)

    def _make_layer(self, upper: Path, missing: set[str]) -> LayerRef:
        def artifact(rel: str) -> bool:
            if rel not in missing:
                return False
            full = upper / rel
            if full.is_symlink() or not full.exists():
                return False
            if full.is_dir():
                return all(artifact(f"{rel}/{c}") for c in os.listdir(full))
            return full.is_file() and full.stat().st_size == 0

        fd, tar_name = tempfile.mkstemp(prefix="layer-", suffix=".tar", dir=self.store.tmp)
        tar_path = Path(tar_name)
        gz_path = tar_path.with_suffix(".tar.gz")
        try:
            with os.fdopen(fd, "wb") as out:
                result = write_diff(upper, out, skip=artifact)
            gzip_file(tar_path, gz_path)
            with open(gz_path, "rb") as fh:
                digest, size = self.store.images.content.ingest(fh)
        finally:
            for p in (tar_path, gz_path):
                p.unlink(missing_ok=True)
        return LayerRef(result.diff_id, digest, size, OCI_LAYER_GZIP)

    async def _copy(self, state: _State, ins: Instruction, opts: BuildOptions) -> None:
        if "from" in ins.flags:
            raise self._err(ins, f"{ins.cmd} --from is not supported yet (no multi-stage builds)")
        v = state.vars()
        words = ins.json if ins.json is not None else expand_words(ins.args, v, self._escape)
        if ins.json is not None:
            words = [self._word(ins, w, v) for w in words]
        if len(words) < 2:
            raise self._err(ins, f"{ins.cmd} requires at least two arguments (SOURCE... DEST)")
        *patterns, dest = words
        for p in patterns:
            if "://" in p:
                raise self._err(ins, f"{ins.cmd} {p}: remote sources are not supported (download it with "
                                     "RUN and the --network host build option)")
        try:
            sources = ctx.resolve_sources(opts.context, patterns, self._ignore)
        except BuildError as exc:
            raise self._err(ins, f"{ins.cmd}: {exc}") from None
        workdir = state.c.get("WorkingDir") or "/"
        dest_dir_syntax = dest.endswith("/") or dest in (".", "..") or dest.endswith("/.")
        dest_path = posixpath.normpath(posixpath.join(workdir, dest))
        if len(sources) > 1 and not dest_dir_syntax:
            raise self._err(ins, f"{ins.cmd}: with more than one source file, the destination must be a "
                                 f"directory and end with a /")
        chown = self._word(ins, ins.flags["chown"], v) if "chown" in ins.flags else ""
        chmod = None
        if "chmod" in ins.flags:
            try:
                chmod = int(ins.flags["chmod"], 8)
            except ValueError:
                raise self._err(ins, f"--chmod={ins.flags['chmod']}: expected an octal mode") from None
        inputs = await asyncio.to_thread(ctx.sources_digest, sources, self._ignore, opts.context)
        instruction = json.dumps([ins.cmd, [s.rel for s in sources], dest_path, dest_dir_syntax, chown,
                                  chmod])
        key = cache_key(parent_chain=state.chain, instruction=instruction, inputs=inputs)
        is_add = ins.cmd == "ADD"

        def change(_merged: Path, rootfd: int) -> None:
            uid, gid = self._chown(ins, rootfd, chown) if chown else (0, 0)
            owner = ctx.Owner(uid, gid)
            into_dir = dest_dir_syntax or ctx.is_dir_in_root(rootfd, dest_path)
            for src in sources:
                if src.is_dir:
                    ctx.copy_tree(rootfd, src.path, ctx.walk(src, self._ignore, opts.context), dest_path,
                                  owner, chmod)
                elif is_add and ctx.is_archive(src.path):
                    arch_owner = owner if chown else ctx.Owner(preserve=True)
                    ctx.extract_archive(rootfd, src.path, dest_path, arch_owner, chmod, self.store.tmp)
                else:
                    target = posixpath.join(dest_path, posixpath.basename(src.rel)) if into_dir else dest_path
                    ctx.copy_file(rootfd, src.path, target, owner, chmod)

        rels = " ".join(s.rel for s in sources)
        await self._layer(state, ins, key, f"{ins.cmd} {rels} {dest_path}", change, no_cache=opts.no_cache)

    def _chown(self, ins: Instruction, rootfd: int, chown: str) -> tuple[int, int]:
        user, _, group = chown.partition(":")
        passwd = ctx.read_file_in_root(rootfd, "/etc/passwd")
        groups = ctx.read_file_in_root(rootfd, "/etc/group")
        try:
            uid, gid, _ = resolve_user({}, {}, chown, passwd, groups)
        except ConfigError as exc:
            raise self._err(ins, f"--chown={chown}: {exc}") from None
        if not group and user.isdigit():
            gid = uid  # Docker: a UID without GID uses the same number for the group
        return uid, gid

    async def _run(self, state: _State, ins: Instruction, opts: BuildOptions) -> None:
        if "mount" in ins.flags or "security" in ins.flags:
            raise self._err(ins, "RUN --mount and --security are not supported")
        network = ins.flags.get("network", opts.network)
        if network == "default":
            network = opts.network
        if network not in ("none", "host"):
            raise self._err(ins, f"RUN --network={network}: only none and host are supported")
        argv = self._exec_or_shell(ins, state)
        env = [f"{k}={val}" for k, val in {**state.args, **state.env}.items()]
        user = state.c.get("User") or ""
        workdir = state.c.get("WorkingDir") or "/"
        key = cache_key(parent_chain=state.chain, instruction=json.dumps(["RUN", argv]),
                        state={"env": env, "user": user, "workdir": workdir, "network": network})

        async def change(merged: Path, rootfd: int) -> None:
            try:
                uid, gid, extra = resolve_user({}, {}, user, ctx.read_file_in_root(rootfd, "/etc/passwd"),
                                               ctx.read_file_in_root(rootfd, "/etc/group"))
            except ConfigError as exc:
                raise self._err(ins, f"USER {user}: {exc}") from None
            os.close(ctx.mkdir_all(rootfd, workdir))
            code = await self.runner.run(merged, RunSpec(args=argv, env=env, cwd=workdir, uid=uid, gid=gid,
                                                         additional_gids=extra, network=network))
            if code != 0:
                hint = ("; RUN steps have no network by default: pass --network host if this step "
                        "downloads something") if network == "none" else ""
                raise BuildError(f"{self._cf_name}:{ins.line}: RUN {ins.args}: exited with code {code}{hint}")

        await self._layer(state, ins, key, "RUN " + " ".join(argv), change, mount_points=True,
                          no_cache=opts.no_cache)

    # -- the result ---------------------------------------------------------------------------
    def _commit(self, state: _State, opts: BuildOptions) -> BuildResult:
        svc = self.store.images
        config = copy.deepcopy(state.config)
        config["created"] = state.created or _now()
        config.setdefault("architecture", host_platform().architecture)
        config.setdefault("os", "linux")
        config["rootfs"] = {"type": "layers", "diff_ids": [layer.diff_id for layer in state.layers]}
        config_body = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
        config_digest = svc.content.put(config_body)
        manifest = {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_body)},
            "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
                       for layer in state.layers],
        }
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        digest = svc.content.put(body)
        assert digest == digest_bytes(body)
        blobs = {d: svc.content.path(d) for d in (digest, config_digest, *(x.digest for x in state.layers))}
        names = [str(parse_reference(t)) for t in opts.tags]
        return BuildResult(image_id=config_digest, manifest_digest=digest, manifest=body, config=config_body,
                           names=names, blobs=blobs)


def _exists_in_root(rootfd: int, path: str) -> bool:
    try:
        os.stat(path, dir_fd=rootfd, follow_symlinks=False)
        return True
    except OSError:
        return False

