"""Pod and PodSpec validation (pkg/apis/core/validation), create and update."""

from __future__ import annotations

import copy
import ipaddress
import json
from fractions import Fraction
from typing import Any

from peapod.api import errors as e
from peapod.api import names
from peapod.api.errors import FieldError
from peapod.api.quantity import format_quantity, parse_quantity_with_format
from peapod.api.validation.common import (
    IS_NEGATIVE,
    as_dict,
    as_int,
    as_list,
    as_str,
    child,
    index,
    key,
    msgs_invalid,
    nonnegative,
    not_found,
    semantic_equal,
    validate_annotations,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
)

MAX_INT32 = 2**31 - 1
MAX_ID = 0xFFFFFFFF
FILE_MODE_MSG = "must be a number between 0 and 0777 (octal), both inclusive"
UPDATABLE_POD_SPEC_FIELDS = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)
VOLUME_SOURCES = (  # the order Kubernetes checks them in (the first one set wins)
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "flocker",
    "persistentVolumeClaim",
    "rbd",
    "cinder",
    "cephfs",
    "quobyte",
    "downwardAPI",
    "fc",
    "flexVolume",
    "configMap",
    "azureFile",
    "vsphereVolume",
    "photonPersistentDisk",
    "portworxVolume",
    "azureDisk",
    "storageos",
    "projected",
    "scaleIO",
    "csi",
    "ephemeral",
    "image",
)
HOST_PATH_TYPES = (
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
)
ENV_FIELD_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
VOLUME_FIELD_PATHS = (
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
)
RESOURCE_FIELD_PATHS = (
    "limits.cpu",
    "limits.ephemeral-storage",
    "limits.memory",
    "requests.cpu",
    "requests.ephemeral-storage",
    "requests.memory",
)
STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
STANDARD_RESOURCES = (
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "storage",
    "requests.storage",
)


def _errs_if(cond: bool, err: FieldError) -> list[FieldError]:
    return [err] if cond else []


# -- volumes ---------------------------------------------------------------------------------------


def _local_descending_path(target: str, path: str) -> list[FieldError]:
    errs = []
    if target.startswith("/"):
        errs.append(e.invalid(path, target, "must be a relative path"))
    errs += _no_backsteps(target, path)
    return errs


def _no_backsteps(target: str, path: str) -> list[FieldError]:
    if ".." in target.replace("\\", "/").split("/"):
        return [e.invalid(path, target, "must not contain '..'")]
    return []


def _file_mode(mode: Any, path: str) -> list[FieldError]:
    m = as_int(mode)
    if m is not None and not 0 <= m <= 0o777:
        return [e.invalid(path, m, FILE_MODE_MSG)]
    return []


def _key_to_path_items(items: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, it in enumerate(as_list(items)):
        it = as_dict(it)
        p = index(path, i)
        if not it.get("key"):
            errs.append(e.required(child(p, "key")))
        target = as_str(it.get("path"))
        if not target:
            errs.append(e.required(child(p, "path")))
        else:
            errs += _local_descending_path(target, child(p, "path"))
        errs += _file_mode(it.get("mode"), child(p, "mode"))
    return errs


def _volume_source(vol: dict[str, Any], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    count = 0
    for src in VOLUME_SOURCES:
        if vol.get(src) is None:
            continue
        if count:
            errs.append(e.forbidden(child(path, src), "may not specify more than 1 volume type"))
            continue
        count += 1
        body = as_dict(vol[src])
        p = child(path, src)
        if src == "hostPath":
            hp = as_str(body.get("path"))
            if not hp:
                errs.append(e.required(child(p, "path")))
            else:
                errs += _no_backsteps(hp, child(p, "path"))
                t = body.get("type")
                if t is not None and t not in HOST_PATH_TYPES:
                    errs.append(e.not_supported(child(p, "type"), t, list(HOST_PATH_TYPES)))
        elif src == "secret":
            if not body.get("secretName"):
                errs.append(e.required(child(p, "secretName")))
            errs += _file_mode(body.get("defaultMode"), child(p, "defaultMode"))
            errs += _key_to_path_items(body.get("items"), child(p, "items"))
        elif src == "configMap":
            if not body.get("name"):
                errs.append(e.required(child(p, "name")))
            errs += _file_mode(body.get("defaultMode"), child(p, "defaultMode"))
            errs += _key_to_path_items(body.get("items"), child(p, "items"))
        elif src == "persistentVolumeClaim":
            if not body.get("claimName"):
                errs.append(e.required(child(p, "claimName")))
        elif src == "emptyDir":
            medium = body.get("medium")
            if medium not in (None, "", "Memory", "HugePages") and not str(medium).startswith("HugePages-"):
                errs.append(e.not_supported(child(p, "medium"), medium, ["", "Memory", "HugePages"]))
        elif src == "downwardAPI":
            errs += _file_mode(body.get("defaultMode"), child(p, "defaultMode"))
            for i, it in enumerate(as_list(body.get("items"))):
                it = as_dict(it)
                ip = index(child(p, "items"), i)
                target = as_str(it.get("path"))
                if not target:
                    errs.append(e.required(child(ip, "path")))
                else:
                    errs += _local_descending_path(target, child(ip, "path"))
                if it.get("fieldRef") is not None:
                    errs += _object_field_selector(
                        as_dict(it["fieldRef"]), VOLUME_FIELD_PATHS, child(ip, "fieldRef")
                    )
        elif src == "nfs":
            if not body.get("server"):
                errs.append(e.required(child(p, "server")))
            np = as_str(body.get("path"))
            if not np:
                errs.append(e.required(child(p, "path")))
            elif not np.startswith("/"):
                errs.append(e.invalid(child(p, "path"), np, "must be an absolute path"))
        elif src == "image":
            if not body.get("reference"):
                errs.append(e.required(child(p, "reference")))
    if count == 0:
        errs.append(e.required(path, "must specify a volume type"))
    return errs


def validate_volumes(volumes: Any, path: str) -> tuple[dict[str, dict[str, Any]], list[FieldError]]:
    errs: list[FieldError] = []
    vols: dict[str, dict[str, Any]] = {}
    for i, vol in enumerate(as_list(volumes)):
        vol = as_dict(vol)
        p = index(path, i)
        name = as_str(vol.get("name"))
        el = _volume_source(vol, p)
        if not name:
            el.append(e.required(child(p, "name")))
        else:
            el += msgs_invalid(child(p, "name"), name, names.is_dns1123_label(name))
        if name in vols:
            el.append(e.duplicate(child(p, "name"), name))
        if not el:
            vols[name] = vol
        errs += el
    return vols, errs


# -- containers ------------------------------------------------------------------------------------


def _ports(ports: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, port in enumerate(as_list(ports)):
        port = as_dict(port)
        p = index(path, i)
        pname = as_str(port.get("name"))
        if pname:
            msgs = names.is_valid_port_name(pname)
            if msgs:
                errs += msgs_invalid(child(p, "name"), pname, msgs)
            elif pname in seen:
                errs.append(e.duplicate(child(p, "name"), pname))
            else:
                seen.add(pname)
        cp = as_int(port.get("containerPort")) or 0
        if cp == 0:
            errs.append(e.required(child(p, "containerPort")))
        else:
            errs += msgs_invalid(child(p, "containerPort"), cp, names.is_valid_port_num(cp))
        hp = as_int(port.get("hostPort")) or 0
        if hp:
            errs += msgs_invalid(child(p, "hostPort"), hp, names.is_valid_port_num(hp))
        proto = as_str(port.get("protocol"))
        if not proto:
            errs.append(e.required(child(p, "protocol")))
        elif proto not in ("SCTP", "TCP", "UDP"):
            errs.append(e.not_supported(child(p, "protocol"), proto, ["SCTP", "TCP", "UDP"]))
    return errs


def _object_field_selector(ref: dict[str, Any], allowed: tuple[str, ...], path: str) -> list[FieldError]:
    if not ref.get("apiVersion"):
        return [e.required(child(path, "apiVersion"))]
    fp = as_str(ref.get("fieldPath"))
    if not fp:
        return [e.required(child(path, "fieldPath"))]
    if "[" in fp and fp.endswith("]"):
        base, sub = fp[:-1].split("[", 1)
        sub = sub.strip("'")
        if base == "metadata.annotations":
            return msgs_invalid(path, sub.lower(), names.is_qualified_name(sub.lower()))
        if base == "metadata.labels":
            return msgs_invalid(path, sub, names.is_qualified_name(sub))
        return [e.invalid(path, base, "does not support subscript")]
    if fp not in allowed:
        return [e.not_supported(child(path, "fieldPath"), fp, sorted(allowed))]
    return []


def _key_selector(sel: dict[str, Any], path: str) -> list[FieldError]:
    errs = msgs_invalid(
        child(path, "name"), as_str(sel.get("name")), names.name_is_dns_subdomain(as_str(sel.get("name")))
    )
    k = as_str(sel.get("key"))
    if not k:
        errs.append(e.required(child(path, "key")))
    else:
        errs += msgs_invalid(child(path, "key"), k, names.is_config_map_key(k))
    return errs


def _env(env: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, ev in enumerate(as_list(env)):
        ev = as_dict(ev)
        p = index(path, i)
        name = as_str(ev.get("name"))
        if not name:
            errs.append(e.required(child(p, "name")))
        else:
            errs += msgs_invalid(child(p, "name"), name, names.is_relaxed_env_var_name(name))
        vf = ev.get("valueFrom")
        if vf is None:
            continue
        vf = as_dict(vf)
        vp = child(p, "valueFrom")
        n = 0
        if vf.get("fieldRef") is not None:
            n += 1
            errs += _object_field_selector(as_dict(vf["fieldRef"]), ENV_FIELD_PATHS, child(vp, "fieldRef"))
        if vf.get("resourceFieldRef") is not None:
            n += 1
            res = as_str(as_dict(vf["resourceFieldRef"]).get("resource"))
            rp = child(vp, "resourceFieldRef")
            if not res:
                errs.append(e.required(child(rp, "resource")))
            elif res not in RESOURCE_FIELD_PATHS and not res.startswith(
                ("requests.hugepages-", "limits.hugepages-")
            ):
                errs.append(e.not_supported(child(rp, "resource"), res, list(RESOURCE_FIELD_PATHS)))
        if vf.get("configMapKeyRef") is not None:
            n += 1
            errs += _key_selector(as_dict(vf["configMapKeyRef"]), child(vp, "configMapKeyRef"))
        if vf.get("secretKeyRef") is not None:
            n += 1
            errs += _key_selector(as_dict(vf["secretKeyRef"]), child(vp, "secretKeyRef"))
        if n == 0:
            errs.append(
                e.invalid(
                    vp,
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, "
                    "`configMapKeyRef` or `secretKeyRef`",
                )
            )
        elif ev.get("value"):
            errs.append(e.invalid(vp, "", "may not be specified when `value` is not empty"))
        elif n > 1:
            errs.append(e.invalid(vp, "", "may not have more than one field specified at a time"))
    return errs


def _env_from(env_from: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, ef in enumerate(as_list(env_from)):
        ef = as_dict(ef)
        p = index(path, i)
        prefix = as_str(ef.get("prefix"))
        if prefix:
            errs += msgs_invalid(child(p, "prefix"), prefix, names.is_relaxed_env_var_name(prefix))
        n = 0
        for src in ("configMapRef", "secretRef"):
            if ef.get(src) is None:
                continue
            n += 1
            ref_name = as_str(as_dict(ef[src]).get("name"))
            if not ref_name:
                errs.append(e.required(child(p, src, "name")))
            else:
                errs += msgs_invalid(
                    child(p, src, "name"), ref_name, names.name_is_dns_subdomain(ref_name, True)
                )
        if n == 0:
            errs.append(e.invalid(path, "", "must specify one of: `configMapRef` or `secretRef`"))
        elif n > 1:
            errs.append(e.invalid(path, "", "may not have more than one field specified at a time"))
    return errs


def _volume_mounts(mounts: Any, vols: dict[str, dict[str, Any]], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    points: set[str] = set()
    for i, m in enumerate(as_list(mounts)):
        m = as_dict(m)
        p = index(path, i)
        name = as_str(m.get("name"))
        if not name:
            errs.append(e.required(child(p, "name")))
        if name not in vols:
            errs.append(not_found(child(p, "name"), name))
        mp = as_str(m.get("mountPath"))
        if not mp:
            errs.append(e.required(child(p, "mountPath")))
        if mp in points:
            errs.append(e.invalid(child(p, "mountPath"), mp, "must be unique"))
        points.add(mp)
        sub = as_str(m.get("subPath"))
        if sub:
            errs += _local_descending_path(sub, child(path, "subPath"))
        sub_expr = as_str(m.get("subPathExpr"))
        if sub_expr:
            if sub:
                errs.append(
                    e.invalid(
                        child(p, "subPathExpr"), sub_expr, "subPathExpr and subPath are mutually exclusive"
                    )
                )
            errs += _local_descending_path(sub_expr, child(path, "subPathExpr"))
        prop = m.get("mountPropagation")
        if prop is not None and prop not in ("None", "HostToContainer", "Bidirectional"):
            errs.append(
                e.not_supported(
                    child(path, "mountPropagation"), prop, ["Bidirectional", "HostToContainer", "None"]
                )
            )
    return errs


def _is_hugepages(name: str) -> bool:
    return name.startswith("hugepages-")


def _is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _overcommit_allowed(name: str) -> bool:
    return _is_native(name) and not _is_hugepages(name)


def _resource_name(name: str, path: str) -> list[FieldError]:
    msgs = names.is_qualified_name(name)
    if msgs:
        return msgs_invalid(path, name, msgs)
    if "/" not in name:
        if name not in STANDARD_RESOURCES and not _is_hugepages(name):
            return [e.invalid(path, name, "must be a standard resource type or fully qualified")]
        if name not in STANDARD_CONTAINER_RESOURCES and not _is_hugepages(name):
            return [e.invalid(path, name, "must be a standard resource for containers")]
    elif not _is_native(name):
        if name.startswith("requests.") or names.is_qualified_name("requests." + name):
            return [e.invalid(path, name, "doesn't follow extended resource name standard")]
    return []


def _quantities(values: Any) -> dict[str, tuple[Fraction, str]]:
    out = {}
    for name, raw in sorted(as_dict(values).items()):
        try:
            amount, fmt = parse_quantity_with_format(raw)
        except ValueError:
            continue  # the decoder reports unparsable quantities
        out[name] = (amount, format_quantity(amount, fmt))
    return out


def _quantity_value(name: str, amount: Fraction, text: str, path: str) -> list[FieldError]:
    errs = []
    if amount < 0:
        errs.append(e.invalid(path, text, IS_NEGATIVE))
    if not _is_native(name) and amount.denominator != 1:
        errs.append(e.invalid(path, text, "must be an integer"))
    return errs


def validate_resources(res: Any, path: str) -> list[FieldError]:
    res = as_dict(res)
    errs: list[FieldError] = []
    lim_path, req_path = child(path, "limits"), child(path, "requests")
    limits = _quantities(res.get("limits"))
    requests = _quantities(res.get("requests"))
    for name, (amount, text) in limits.items():
        p = key(lim_path, name)
        errs += _resource_name(name, p)
        errs += _quantity_value(name, amount, text, p)
    for name, (amount, text) in requests.items():
        p = key(req_path, name)
        errs += _resource_name(name, p)
        errs += _quantity_value(name, amount, text, p)
        if name in limits:
            lim_amount, lim_text = limits[name]
            if amount != lim_amount and not _overcommit_allowed(name):
                errs.append(e.invalid(req_path, text, f"must be equal to {name} limit of {lim_text}"))
            elif amount > lim_amount:
                errs.append(
                    e.invalid(req_path, text, f"must be less than or equal to {name} limit of {lim_text}")
                )
        elif not _overcommit_allowed(name):
            errs.append(e.required(lim_path, "Limit must be set for non overcommitable resources"))
    has_qos = any(n in ("cpu", "memory") for n in (*limits, *requests))
    if not has_qos and any(_is_hugepages(n) for n in (*limits, *requests)):
        errs.append(e.forbidden(path, "HugePages require cpu or memory"))
    return errs


def _id_range(value: Any, path: str) -> list[FieldError]:
    v = as_int(value)
    if v is not None and not 0 <= v <= MAX_ID:
        return [e.invalid(path, v, names.inclusive_range_error(0, MAX_ID))]
    return []


def _seccomp(profile: Any, path: str) -> list[FieldError]:
    if profile is None:
        return []
    profile = as_dict(profile)
    t = profile.get("type")
    lp = profile.get("localhostProfile")
    if t == "Localhost":
        if not lp:
            return [e.required(child(path, "localhostProfile"), "must be set when seccomp type is Localhost")]
        return []
    if t in ("RuntimeDefault", "Unconfined"):
        if lp is not None:
            return [
                e.invalid(
                    child(path, "localhostProfile"), lp, "can only be set when seccomp type is Localhost"
                )
            ]
        return []
    return [e.not_supported(child(path, "type"), t, ["Localhost", "RuntimeDefault", "Unconfined"])]


def validate_container_security_context(sc: Any, path: str) -> list[FieldError]:
    if sc is None:
        return []
    sc = as_dict(sc)
    errs: list[FieldError] = []
    errs += _id_range(sc.get("runAsUser"), child(path, "runAsUser"))
    errs += _id_range(sc.get("runAsGroup"), child(path, "runAsGroup"))
    pm = sc.get("procMount")
    if pm is not None and pm not in ("Default", "Unmasked"):
        errs.append(e.not_supported(child(path, "procMount"), pm, ["Default", "Unmasked"]))
    if sc.get("allowPrivilegeEscalation") is False and sc.get("privileged") is True:
        errs.append(
            e.invalid(path, sc, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true")
        )
    errs += _seccomp(sc.get("seccompProfile"), child(path, "seccompProfile"))
    return errs


def _handler(h: dict[str, Any], grace: int | None, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    n = 0
    for kind in ("exec", "httpGet", "tcpSocket", "grpc", "sleep"):
        if h.get(kind) is None:
            continue
        if n:
            errs.append(e.forbidden(child(path, kind), "may not specify more than 1 handler type"))
            continue
        n += 1
        body = as_dict(h[kind])
        p = child(path, kind)
        if kind == "exec":
            if not as_list(body.get("command")):
                errs.append(e.required(child(p, "command")))
        elif kind == "httpGet":
            if not body.get("path"):
                errs.append(e.required(child(p, "path")))
            errs += _port_num_or_name(body.get("port"), child(p, "port"))
            scheme = body.get("scheme")
            if scheme not in ("HTTP", "HTTPS"):
                errs.append(
                    e.not_supported(
                        child(p, "scheme"), scheme if scheme is not None else "", ["HTTP", "HTTPS"]
                    )
                )
            for hdr in as_list(body.get("httpHeaders")):
                hname = as_str(as_dict(hdr).get("name"))
                errs += msgs_invalid(child(p, "httpHeaders"), hname, names.is_http_header_name(hname))
        elif kind in ("tcpSocket", "grpc"):
            errs += _port_num_or_name(body.get("port"), child(p, "port"))
        elif kind == "sleep":
            secs = as_int(body.get("seconds")) or 0
            if grace is not None and (secs < 0 or secs > grace):
                errs.append(
                    e.invalid(
                        p, secs, f"must be non-negative and less than terminationGracePeriodSeconds ({grace})"
                    )
                )
    if n == 0:
        errs.append(e.required(path, "must specify a handler type"))
    return errs


def _port_num_or_name(port: Any, path: str) -> list[FieldError]:
    if isinstance(port, str):
        return msgs_invalid(path, port, names.is_valid_port_name(port))
    if isinstance(port, int) and not isinstance(port, bool):
        return msgs_invalid(path, port, names.is_valid_port_num(port))
    return msgs_invalid(path, 0, names.is_valid_port_num(0))


def _probe(probe: Any, grace: int | None, path: str, kind: str) -> list[FieldError]:
    if probe is None:
        return []
    probe = as_dict(probe)
    errs = _handler(probe, grace, path)
    for f in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        errs += nonnegative(probe.get(f), child(path, f))
    tg = as_int(probe.get("terminationGracePeriodSeconds"))
    if tg is not None and tg <= 0:
        errs.append(e.invalid(child(path, "terminationGracePeriodSeconds"), tg, "must be greater than 0"))
    st = as_int(probe.get("successThreshold"))
    if kind in ("livenessProbe", "startupProbe") and st is not None and st != 1:
        errs.append(e.invalid(child(path, "successThreshold"), st, "must be 1"))
    if kind == "readinessProbe" and probe.get("terminationGracePeriodSeconds") is not None:
        errs.append(
            e.invalid(child(path, "terminationGracePeriodSeconds"), tg, "must not be set for readinessProbes")
        )
    return errs


def _lifecycle(lc: Any, grace: int | None, path: str) -> list[FieldError]:
    lc = as_dict(lc)
    errs: list[FieldError] = []
    for hook in ("postStart", "preStop"):
        if lc.get(hook) is not None:
            errs += _handler(as_dict(lc[hook]), grace, child(path, hook))
    return errs


def _container_common(c: dict[str, Any], vols: dict[str, dict[str, Any]], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    name = as_str(c.get("name"))
    if not name:
        errs.append(e.required(child(path, "name")))
    else:
        errs += msgs_invalid(child(path, "name"), name, names.is_dns1123_label(name))
    if not as_str(c.get("image")):
        errs.append(e.required(child(path, "image")))
    tmp = c.get("terminationMessagePolicy")
    if tmp in (None, ""):
        errs.append(e.required(child(path, "terminationMessagePolicy")))
    elif tmp not in ("File", "FallbackToLogsOnError"):
        errs.append(
            e.not_supported(child(path, "terminationMessagePolicy"), tmp, ["File", "FallbackToLogsOnError"])
        )
    errs += _ports(c.get("ports"), child(path, "ports"))
    errs += _env(c.get("env"), child(path, "env"))
    errs += _env_from(c.get("envFrom"), child(path, "envFrom"))
    errs += _volume_mounts(c.get("volumeMounts"), vols, child(path, "volumeMounts"))
    ipp = c.get("imagePullPolicy")
    if ipp in (None, ""):
        errs.append(e.required(child(path, "imagePullPolicy")))
    elif ipp not in ("Always", "IfNotPresent", "Never"):
        errs.append(e.not_supported(child(path, "imagePullPolicy"), ipp, ["Always", "IfNotPresent", "Never"]))
    errs += validate_resources(c.get("resources"), child(path, "resources"))
    errs += validate_container_security_context(c.get("securityContext"), child(path, "securityContext"))
    return errs


def _host_port_conflicts(containers: list[dict[str, Any]], path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    seen: set[str] = set()
    for ci, c in enumerate(containers):
        for pi, port in enumerate(as_list(c.get("ports"))):
            port = as_dict(port)
            hp = as_int(port.get("hostPort")) or 0
            if not hp:
                continue
            sig = f"{as_str(port.get('protocol'))}/{as_str(port.get('hostIP'))}/{hp}"
            if sig in seen:
                errs.append(e.duplicate(child(index(child(index(path, ci), "ports"), pi), "hostPort"), sig))
            seen.add(sig)
    return errs


def _containers(
    containers: Any, vols: dict[str, dict[str, Any]], grace: int | None, path: str
) -> list[FieldError]:
    cs = [as_dict(c) for c in as_list(containers)]
    if not cs:
        return [e.required(path)]
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, c in enumerate(cs):
        p = index(path, i)
        errs += _container_common(c, vols, p)
        name = as_str(c.get("name"))
        if name in seen:
            errs.append(e.duplicate(child(p, "name"), name))
        seen.add(name)
        if c.get("lifecycle") is not None:
            errs += _lifecycle(c["lifecycle"], grace, child(p, "lifecycle"))
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            errs += _probe(c.get(probe), grace, child(p, probe), probe)
        if c.get("restartPolicy") is not None:
            errs.append(e.forbidden(child(p, "restartPolicy"), "may not be set for non-init containers"))
    errs += _host_port_conflicts(cs, path)
    return errs


def _init_containers(
    init: Any, regular: Any, vols: dict[str, dict[str, Any]], grace: int | None, path: str
) -> list[FieldError]:
    errs: list[FieldError] = []
    seen = {as_str(as_dict(c).get("name")) for c in as_list(regular)}
    for i, c in enumerate(as_list(init)):
        c = as_dict(c)
        p = index(path, i)
        errs += _container_common(c, vols, p)
        always = False
        rp = c.get("restartPolicy")
        if rp is not None:
            if rp != "Always":
                errs.append(e.not_supported(child(p, "restartPolicy"), rp, ["Always"]))
            always = rp == "Always"
        name = as_str(c.get("name"))
        if name in seen:
            errs.append(e.duplicate(child(p, "name"), name))
        elif name:
            seen.add(name)
        errs += _host_port_conflicts([c], path)
        if always:
            if c.get("lifecycle") is not None:
                errs += _lifecycle(c["lifecycle"], grace, child(p, "lifecycle"))
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                errs += _probe(c.get(probe), grace, child(p, probe), probe)
        else:
            for f in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if c.get(f) is not None:
                    errs.append(
                        e.forbidden(
                            child(p, f), "may not be set for init containers without restartPolicy=Always"
                        )
                    )
    return errs


# -- pod spec --------------------------------------------------------------------------------------


def validate_tolerations(tolerations: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, t in enumerate(as_list(tolerations)):
        t = as_dict(t)
        p = index(path, i)
        k = as_str(t.get("key"))
        op = as_str(t.get("operator"))
        effect = as_str(t.get("effect"))
        value = as_str(t.get("value"))
        if k:
            errs += msgs_invalid(child(p, "key"), k, names.is_qualified_name(k))
        if not k and op != "Exists":
            errs.append(
                e.invalid(
                    child(p, "operator"),
                    op,
                    "operator must be Exists when `key` is empty, "
                    'which means "match all values and all keys"',
                )
            )
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            errs.append(
                e.invalid(
                    child(p, "effect"), effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"
                )
            )
        if op in ("Equal", ""):
            msgs = names.is_valid_label_value(value)
            if msgs:
                errs.append(e.invalid(child(p, "operator"), value, ";".join(msgs)))
        elif op == "Exists":
            if value:
                errs.append(
                    e.invalid(child(p, "operator"), value, "value must be empty when `operator` is 'Exists'")
                )
        else:
            errs.append(e.not_supported(child(p, "operator"), op, ["Equal", "Exists"]))
        if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errs.append(
                e.not_supported(child(p, "effect"), effect, ["NoSchedule", "PreferNoSchedule", "NoExecute"])
            )
    return errs


def _pod_security_context(spec: dict[str, Any], path: str) -> list[FieldError]:
    sc = spec.get("securityContext")
    if sc is None:
        return []
    sc = as_dict(sc)
    p = child(path, "securityContext")
    errs: list[FieldError] = []
    errs += _id_range(sc.get("fsGroup"), child(p, "fsGroup"))
    errs += _id_range(sc.get("runAsUser"), child(p, "runAsUser"))
    errs += _id_range(sc.get("runAsGroup"), child(p, "runAsGroup"))
    for g, gid in enumerate(as_list(sc.get("supplementalGroups"))):
        errs += _id_range(gid, index(child(p, "supplementalGroups"), g))
    if spec.get("shareProcessNamespace") and spec.get("hostPID"):
        errs.append(
            e.invalid(
                child(path, "shareProcessNamespace"),
                True,
                "ShareProcessNamespace and HostPID cannot both be enabled",
            )
        )
    fgcp = sc.get("fsGroupChangePolicy")
    if fgcp is not None and fgcp not in ("Always", "OnRootMismatch"):
        errs.append(e.not_supported(child(p, "fsGroupChangePolicy"), fgcp, ["Always", "OnRootMismatch"]))
    errs += _seccomp(sc.get("seccompProfile"), child(p, "seccompProfile"))
    return errs


def validate_pod_spec(spec: Any, path: str = "spec", *, is_pod: bool = True) -> list[FieldError]:
    """ValidatePodSpec. ``is_pod`` is False for templates (hostPort 0 allowed with hostNetwork)."""
    spec = as_dict(spec)
    errs: list[FieldError] = []
    grace = as_int(spec.get("terminationGracePeriodSeconds"))
    if spec.get("terminationGracePeriodSeconds") is None:
        errs.append(e.required(child(path, "terminationGracePeriodSeconds")))
    vols, verrs = validate_volumes(spec.get("volumes"), child(path, "volumes"))
    errs += verrs
    errs += _containers(spec.get("containers"), vols, grace, child(path, "containers"))
    errs += _init_containers(
        spec.get("initContainers"), spec.get("containers"), vols, grace, child(path, "initContainers")
    )
    if spec.get("hostNetwork"):
        for ci, c in enumerate(as_list(spec.get("containers"))):
            for pi, port in enumerate(as_list(as_dict(c).get("ports"))):
                port = as_dict(port)
                hp, cp = as_int(port.get("hostPort")) or 0, as_int(port.get("containerPort")) or 0
                if (is_pod or hp != 0) and hp != cp:
                    p = child(index(child(index(child(path, "containers"), ci), "ports"), pi), "hostPort")
                    errs.append(e.invalid(p, hp, "must match `containerPort` when `hostNetwork` is true"))
    rp = spec.get("restartPolicy")
    if rp in (None, ""):
        errs.append(e.required(child(path, "restartPolicy")))
    elif rp not in ("Always", "OnFailure", "Never"):
        errs.append(e.not_supported(child(path, "restartPolicy"), rp, ["Always", "OnFailure", "Never"]))
    dp = spec.get("dnsPolicy")
    dns_values = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]
    if dp in (None, ""):
        errs.append(e.required(child(path, "dnsPolicy")))
    elif dp not in dns_values:
        errs.append(e.not_supported(child(path, "dnsPolicy"), dp, dns_values))
    errs += validate_labels(spec.get("nodeSelector"), child(path, "nodeSelector"))
    errs += _pod_security_context(spec, path)
    for i, ref in enumerate(as_list(spec.get("imagePullSecrets"))):
        if set(as_dict(ref)) - {"name"}:
            errs.append(e.invalid(index(child(path, "imagePullSecrets"), i), ref, "only name may be set"))
    if dp == "None":
        cfg = spec.get("dnsConfig")
        if cfg is None:
            errs.append(
                e.required(child(path, "dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None")
            )
        elif not as_list(as_dict(cfg).get("nameservers")):
            errs.append(
                e.required(
                    child(path, "dnsConfig", "nameservers"),
                    "must provide at least one DNS nameserver when `dnsPolicy` is None",
                )
            )
    for i, gate in enumerate(as_list(spec.get("readinessGates"))):
        ct = as_str(as_dict(gate).get("conditionType"))
        errs += msgs_invalid(
            child(index(child(path, "readinessGates"), i), "conditionType"), ct, names.is_qualified_name(ct)
        )
    seen_gates: set[str] = set()
    for i, gate in enumerate(as_list(spec.get("schedulingGates"))):
        gname = as_str(as_dict(gate).get("name"))
        gp = index(child(path, "schedulingGates"), i)
        errs += msgs_invalid(gp, gname, names.is_qualified_name(gname))
        if gname in seen_gates:
            errs.append(e.duplicate(gp, gname))
        seen_gates.add(gname)
    for f, fn in (
        ("serviceAccountName", names.name_is_dns_subdomain),
        ("nodeName", names.name_is_dns_subdomain),
    ):
        v = as_str(spec.get(f))
        if v:
            errs += msgs_invalid(child(path, f), v, fn(v, False))
    ads = spec.get("activeDeadlineSeconds")
    if isinstance(ads, int) and not isinstance(ads, bool) and not 1 <= ads <= MAX_INT32:
        errs.append(
            e.invalid(child(path, "activeDeadlineSeconds"), ads, names.inclusive_range_error(1, MAX_INT32))
        )
    for f in ("hostname", "subdomain"):
        v = as_str(spec.get(f))
        if v:
            errs += msgs_invalid(child(path, f), v, names.is_dns1123_label(v))
    errs += validate_tolerations(spec.get("tolerations"), child(path, "tolerations"))
    for i, alias in enumerate(as_list(spec.get("hostAliases"))):
        alias = as_dict(alias)
        ap = index(child(path, "hostAliases"), i)
        ip = as_str(alias.get("ip"))
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            errs.append(
                e.invalid(
                    child(ap, "ip"), ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
                )
            )
        for j, h in enumerate(as_list(alias.get("hostnames"))):
            errs += msgs_invalid(index(child(ap, "hostnames"), j), h, names.is_dns1123_subdomain(as_str(h)))
    pcn = as_str(spec.get("priorityClassName"))
    if pcn:
        errs += msgs_invalid(child(path, "priorityClassName"), pcn, names.name_is_dns_subdomain(pcn))
    if spec.get("runtimeClassName") is not None:
        rcn = as_str(spec.get("runtimeClassName"))
        errs += msgs_invalid(child(path, "runtimeClassName"), rcn, names.name_is_dns_subdomain(rcn))
    pp = spec.get("preemptionPolicy")
    if pp is not None:
        if pp == "":
            errs.append(e.required(child(path, "preemptionPolicy")))
        elif pp not in ("PreemptLowerPriority", "Never"):
            errs.append(
                e.not_supported(child(path, "preemptionPolicy"), pp, ["PreemptLowerPriority", "Never"])
            )
    os_name = as_dict(spec.get("os")).get("name") if spec.get("os") is not None else None
    if spec.get("os") is not None and os_name not in ("linux", "windows"):
        errs.append(e.not_supported(child(path, "os", "name"), os_name, ["linux", "windows"]))
    return errs


def _pod_only(pod: dict[str, Any]) -> list[FieldError]:
    spec = as_dict(pod.get("spec"))
    errs: list[FieldError] = []
    if not spec.get("serviceAccountName"):
        for vi, vol in enumerate(as_list(spec.get("volumes"))):
            for si, src in enumerate(as_list(as_dict(as_dict(vol).get("projected")).get("sources"))):
                if as_dict(src).get("serviceAccountToken") is not None:
                    errs.append(
                        e.forbidden(
                            f"spec.volumes[{vi}].projected.sources[{si}].serviceAccountToken",
                            "must not be specified when serviceAccountName is not set",
                        )
                    )
    for field in ("containers", "initContainers"):
        for i, c in enumerate(as_list(spec.get(field))):
            image = as_str(as_dict(c).get("image"))
            if image != image.strip():
                errs.append(
                    e.invalid(
                        f"spec.{field}[{i}].image", image, "must not have leading or trailing whitespace"
                    )
                )
    return errs


def _pod_annotations(meta: dict[str, Any]) -> list[FieldError]:
    ann = as_dict(meta.get("annotations"))
    cost = ann.get("controller.kubernetes.io/pod-deletion-cost")
    if cost is not None:
        try:
            ok = -(2**31) <= int(str(cost), 10) < 2**31 and str(cost).strip() == str(cost)
        except ValueError:
            ok = False
        if not ok:
            return [
                e.invalid(
                    "metadata.annotations[controller.kubernetes.io/pod-deletion-cost]",
                    cost,
                    "must be a 32bit integer",
                )
            ]
    return []


def validate_pod(pod: dict[str, Any]) -> list[FieldError]:
    meta = as_dict(pod.get("metadata"))
    errs = validate_object_meta(meta, True, names.name_is_dns_subdomain)
    errs += _pod_annotations(meta)
    errs += validate_pod_spec(pod.get("spec"), "spec", is_pod=True)
    errs += _pod_only(pod)
    return errs


def validate_pod_template(template: Any, path: str) -> list[FieldError]:
    """ValidatePodTemplateSpec (labels are reported at ``<path>.labels``, as Kubernetes does)."""
    template = as_dict(template)
    meta = as_dict(template.get("metadata"))
    errs = validate_labels(meta.get("labels"), child(path, "labels"))
    errs += validate_annotations(meta.get("annotations"), child(path, "annotations"))
    errs += validate_pod_spec(template.get("spec"), child(path, "spec"), is_pod=False)
    if as_list(as_dict(template.get("spec")).get("ephemeralContainers")):
        errs.append(
            e.forbidden(
                child(path, "spec", "ephemeralContainers"), "ephemeral containers not allowed in pod template"
            )
        )
    return errs


# -- update ----------------------------------------------------------------------------------------


def _container_updates(new: Any, old: Any, path: str) -> tuple[list[FieldError], bool]:
    new_l, old_l = as_list(new), as_list(old)
    if len(new_l) != len(old_l):
        return [e.forbidden(path, "pod updates may not add or remove containers")], True
    errs: list[FieldError] = []
    for i, c in enumerate(new_l):
        image = as_str(as_dict(c).get("image"))
        if not image:
            errs.append(e.required(child(index(path, i), "image")))
        if image != image.strip():
            errs.append(
                e.invalid(
                    child(index(path, i), "image"), image, "must not have leading or trailing whitespace"
                )
            )
    return errs, False


def _only_added_tolerations(new: Any, old: Any, path: str) -> list[FieldError]:
    new_l = [as_dict(t) for t in as_list(new)]
    for o in as_list(old):
        o = dict(as_dict(o))
        found = False
        for n in new_l:
            o["tolerationSeconds"] = n.get("tolerationSeconds")
            if semantic_equal(
                {k: v for k, v in o.items() if v is not None}, {k: v for k, v in n.items() if v is not None}
            ):
                found = True
                break
        if not found:
            return [e.forbidden(path, "existing toleration can not be modified except its tolerationSeconds")]
    return validate_tolerations(new, path)


def _only_deleted_gates(new: Any, old: Any, path: str) -> list[FieldError]:
    old_names = {as_str(as_dict(g).get("name")) for g in as_list(old)}
    errs = []
    for i, g in enumerate(as_list(new)):
        gname = as_str(as_dict(g).get("name"))
        if gname not in old_names:
            errs.append(
                e.forbidden(
                    child(index(path, i), "name"),
                    f"only deletion is allowed, but found new scheduling gate '{gname}'",
                )
            )
    return errs


def _spec_diff(old: Any, new: Any, path: str = "") -> list[str]:
    """A readable stand-in for Go's cmp.Diff of two pod specs: changed paths with old/new values."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for k in sorted(set(old) | set(new)):
            if not semantic_equal(old.get(k), new.get(k)):
                lines += _spec_diff(old.get(k), new.get(k), f"{path}.{k}" if path else k)
        return lines
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        lines = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            if not semantic_equal(a, b):
                lines += _spec_diff(a, b, f"{path}[{i}]")
        return lines
    return [
        f"- \t{path}: {json.dumps(old, sort_keys=True)}",
        f"+ \t{path}: {json.dumps(new, sort_keys=True)}",
    ]


def validate_pod_update(new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
    errs = validate_object_meta_update(new.get("metadata"), old.get("metadata"))
    errs += validate_pod(new)
    ns, os_ = as_dict(new.get("spec")), as_dict(old.get("spec"))
    for field in ("containers", "initContainers"):
        cerrs, stop = _container_updates(ns.get(field), os_.get(field), f"spec.{field}")
        errs += cerrs
        if stop:
            return errs
    new_ads, old_ads = ns.get("activeDeadlineSeconds"), os_.get("activeDeadlineSeconds")
    if new_ads is not None:
        if isinstance(new_ads, int) and not 0 <= new_ads <= MAX_INT32:
            errs.append(
                e.invalid("spec.activeDeadlineSeconds", new_ads, names.inclusive_range_error(0, MAX_INT32))
            )
            return errs
        if isinstance(old_ads, int) and isinstance(new_ads, int) and old_ads < new_ads:
            errs.append(
                e.invalid(
                    "spec.activeDeadlineSeconds", new_ads, "must be less than or equal to previous value"
                )
            )
            return errs
    elif old_ads is not None:
        errs.append(
            e.invalid(
                "spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value"
            )
        )
    errs += _only_added_tolerations(ns.get("tolerations"), os_.get("tolerations"), "spec.tolerations")
    errs += _only_deleted_gates(ns.get("schedulingGates"), os_.get("schedulingGates"), "spec.schedulingGates")
    if semantic_equal(ns, os_):
        return errs
    munged = copy.deepcopy(ns)
    for field in ("containers", "initContainers"):
        for i, c in enumerate(as_list(munged.get(field))):
            if isinstance(c, dict):
                c["image"] = as_dict(as_list(os_.get(field))[i]).get("image")
    for field in ("activeDeadlineSeconds", "schedulingGates", "tolerations"):
        munged.pop(field, None)
        if field in os_:
            munged[field] = os_[field]
    old_grace = as_int(os_.get("terminationGracePeriodSeconds"))
    if old_grace is not None and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if os_.get("schedulingGates"):
        # Gated pods may gain nodeSelector entries and node affinity.
        old_sel = as_dict(os_.get("nodeSelector"))
        new_sel = as_dict(munged.get("nodeSelector"))
        if not semantic_equal(new_sel, old_sel):
            for k, v in old_sel.items():
                if new_sel.get(k) != v:
                    errs.append(e.invalid("spec.nodeSelector", v, "field is immutable"))
                    break
            munged["nodeSelector"] = os_.get("nodeSelector")
        old_aff = as_dict(os_.get("affinity")).get("nodeAffinity")
        if isinstance(munged.get("affinity"), dict):
            munged["affinity"] = dict(munged["affinity"])
            if old_aff is None:
                munged["affinity"].pop("nodeAffinity", None)
                if not munged["affinity"] and os_.get("affinity") is None:
                    munged.pop("affinity")
            else:
                munged["affinity"]["nodeAffinity"] = old_aff
    if not semantic_equal(munged, os_):
        diff = "\n".join(["  core.PodSpec{", *_spec_diff(os_, munged), "  }"])
        errs.append(
            e.forbidden(
                "spec",
                "pod updates may not change fields other than "
                + ",".join(UPDATABLE_POD_SPEC_FIELDS)
                + "\n"
                + diff,
            )
        )
    return errs
