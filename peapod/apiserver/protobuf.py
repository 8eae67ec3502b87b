"""Decode the Kubernetes protobuf request bodies that kubectl 1.32+ sends.

``kubectl create namespace|configmap|secret|deployment|service|job``, ``auth can-i`` and
``create token`` post ``application/vnd.kubernetes.protobuf``: the magic ``k8s\\x00`` and a
``runtime.Unknown`` (1 typeMeta{1 apiVersion, 2 kind}, 2 raw, 3 contentEncoding, 4 contentType)
whose ``raw`` is the object's own message. We turn that into the JSON dict the JSON API would have
received, so every other layer only ever sees JSON.

Field numbers follow k8s.io/api ``generated.proto``. Those messages are proto2 with gogo's
non-nullable fields, so value fields are always on the wire (``""``, ``0``, empty messages) while
pointer fields appear only when set; :data:`P` marks pointer fields, whose zero values are kept,
and zero values of the others are dropped like Go's ``omitempty`` would.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from peapod.api.errors import ApiError, bad_request, unsupported_media_type

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# Field flags.
R = 1  # repeated
P = 2  # pointer / optional in Go: zero values are meaningful and kept
INLINE = 4  # embedded struct: its fields are merged into the parent (json:",inline")

# Scalar kinds; anything else names a message in MESSAGES.
STR, BYTES, INT, BOOL = "string", "bytes", "int", "bool"
MAP_STR, MAP_BYTES, MAP_QTY = "map<string,string>", "map<string,bytes>", "map<string,Quantity>"
TIME, QTY, INTSTR = "Time", "Quantity", "IntOrString"

Field = tuple[str, str, int]  # json name, kind, flags

_LOR = {1: ("name", STR, 0)}  # LocalObjectReference
_KEY_SELECTOR = {1: ("", "LocalObjectReference", INLINE), 2: ("key", STR, 0), 3: ("optional", BOOL, P)}

MESSAGES: dict[str, dict[int, Field]] = {
    # k8s.io/apimachinery/pkg/apis/meta/v1
    "ObjectMeta": {
        1: ("name", STR, 0),
        2: ("generateName", STR, 0),
        3: ("namespace", STR, 0),
        4: ("selfLink", STR, 0),
        5: ("uid", STR, 0),
        6: ("resourceVersion", STR, 0),
        7: ("generation", INT, 0),
        8: ("creationTimestamp", TIME, 0),
        9: ("deletionTimestamp", TIME, P),
        10: ("deletionGracePeriodSeconds", INT, P),
        11: ("labels", MAP_STR, 0),
        12: ("annotations", MAP_STR, 0),
        13: ("ownerReferences", "OwnerReference", R),
        14: ("finalizers", STR, R),
    },
    "OwnerReference": {
        1: ("kind", STR, 0),
        3: ("name", STR, 0),
        4: ("uid", STR, 0),
        5: ("apiVersion", STR, 0),
        6: ("controller", BOOL, P),
        7: ("blockOwnerDeletion", BOOL, P),
    },
    "LabelSelector": {1: ("matchLabels", MAP_STR, 0), 2: ("matchExpressions", "LabelSelectorRequirement", R)},
    "LabelSelectorRequirement": {1: ("key", STR, 0), 2: ("operator", STR, 0), 3: ("values", STR, R)},
    # core/v1
    "Namespace": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "NamespaceSpec", 0)},
    "NamespaceSpec": {1: ("finalizers", STR, R)},
    "ConfigMap": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("data", MAP_STR, 0),
        3: ("binaryData", MAP_BYTES, 0),
        4: ("immutable", BOOL, P),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("data", MAP_BYTES, 0),
        3: ("type", STR, 0),
        4: ("stringData", MAP_STR, 0),
        5: ("immutable", BOOL, P),
    },
    "Service": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "ServiceSpec", 0)},
    "ServiceSpec": {
        1: ("ports", "ServicePort", R),
        2: ("selector", MAP_STR, 0),
        3: ("clusterIP", STR, 0),
        4: ("type", STR, 0),
        5: ("externalIPs", STR, R),
        7: ("sessionAffinity", STR, 0),
        8: ("loadBalancerIP", STR, 0),
        9: ("loadBalancerSourceRanges", STR, R),
        10: ("externalName", STR, 0),
        11: ("externalTrafficPolicy", STR, 0),
        12: ("healthCheckNodePort", INT, 0),
        13: ("publishNotReadyAddresses", BOOL, 0),
        17: ("ipFamilyPolicy", STR, P),
        18: ("clusterIPs", STR, R),
        19: ("ipFamilies", STR, R),
        20: ("allocateLoadBalancerNodePorts", BOOL, P),
        21: ("loadBalancerClass", STR, P),
        22: ("internalTrafficPolicy", STR, P),
    },
    "ServicePort": {
        1: ("name", STR, 0),
        2: ("protocol", STR, 0),
        3: ("port", INT, P),
        4: ("targetPort", INTSTR, 0),
        5: ("nodePort", INT, 0),
        6: ("appProtocol", STR, P),
    },
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "PodSpec", 0)},
    "PodSpec": {
        1: ("volumes", "Volume", R),
        2: ("containers", "Container", R),
        3: ("restartPolicy", STR, 0),
        4: ("terminationGracePeriodSeconds", INT, P),
        5: ("activeDeadlineSeconds", INT, P),
        6: ("dnsPolicy", STR, 0),
        7: ("nodeSelector", MAP_STR, 0),
        8: ("serviceAccountName", STR, 0),
        9: ("serviceAccount", STR, 0),
        10: ("nodeName", STR, 0),
        11: ("hostNetwork", BOOL, 0),
        12: ("hostPID", BOOL, 0),
        13: ("hostIPC", BOOL, 0),
        14: ("securityContext", "PodSecurityContext", P),
        15: ("imagePullSecrets", "LocalObjectReference", R),
        16: ("hostname", STR, 0),
        17: ("subdomain", STR, 0),
        19: ("schedulerName", STR, 0),
        20: ("initContainers", "Container", R),
        21: ("automountServiceAccountToken", BOOL, P),
        22: ("tolerations", "Toleration", R),
        24: ("priorityClassName", STR, 0),
        25: ("priority", INT, P),
        27: ("shareProcessNamespace", BOOL, P),
        29: ("runtimeClassName", STR, P),
        30: ("enableServiceLinks", BOOL, P),
        31: ("preemptionPolicy", STR, P),
    },
    "PodSecurityContext": {
        2: ("runAsUser", INT, P),
        3: ("runAsNonRoot", BOOL, P),
        4: ("supplementalGroups", INT, R),
        5: ("fsGroup", INT, P),
        6: ("runAsGroup", INT, P),
    },
    "Toleration": {
        1: ("key", STR, 0),
        2: ("operator", STR, 0),
        3: ("value", STR, 0),
        4: ("effect", STR, 0),
        5: ("tolerationSeconds", INT, P),
    },
    "LocalObjectReference": _LOR,
    "Volume": {1: ("name", STR, 0), 2: ("", "VolumeSource", INLINE)},
    "VolumeSource": {
        1: ("hostPath", "HostPathVolumeSource", P),
        2: ("emptyDir", "EmptyDirVolumeSource", P),
        6: ("secret", "SecretVolumeSource", P),
        10: ("persistentVolumeClaim", "PVCVolumeSource", P),
        19: ("configMap", "ConfigMapVolumeSource", P),
    },
    "HostPathVolumeSource": {1: ("path", STR, 0), 2: ("type", STR, P)},
    "EmptyDirVolumeSource": {1: ("medium", STR, 0), 2: ("sizeLimit", QTY, P)},
    "SecretVolumeSource": {
        1: ("secretName", STR, 0),
        2: ("items", "KeyToPath", R),
        3: ("defaultMode", INT, P),
        4: ("optional", BOOL, P),
    },
    "ConfigMapVolumeSource": {
        1: ("", "LocalObjectReference", INLINE),
        2: ("items", "KeyToPath", R),
        3: ("defaultMode", INT, P),
        4: ("optional", BOOL, P),
    },
    "PVCVolumeSource": {1: ("claimName", STR, 0), 2: ("readOnly", BOOL, 0)},
    "KeyToPath": {1: ("key", STR, 0), 2: ("path", STR, 0), 3: ("mode", INT, P)},
    "Container": {
        1: ("name", STR, 0),
        2: ("image", STR, 0),
        3: ("command", STR, R),
        4: ("args", STR, R),
        5: ("workingDir", STR, 0),
        6: ("ports", "ContainerPort", R),
        7: ("env", "EnvVar", R),
        8: ("resources", "ResourceRequirements", 0),
        9: ("volumeMounts", "VolumeMount", R),
        10: ("livenessProbe", "Probe", P),
        11: ("readinessProbe", "Probe", P),
        13: ("terminationMessagePath", STR, 0),
        14: ("imagePullPolicy", STR, 0),
        15: ("securityContext", "SecurityContext", P),
        16: ("stdin", BOOL, 0),
        17: ("stdinOnce", BOOL, 0),
        18: ("tty", BOOL, 0),
        19: ("envFrom", "EnvFromSource", R),
        20: ("terminationMessagePolicy", STR, 0),
        22: ("startupProbe", "Probe", P),
        24: ("restartPolicy", STR, P),
    },
    "ContainerPort": {
        1: ("name", STR, 0),
        2: ("hostPort", INT, 0),
        3: ("containerPort", INT, P),
        4: ("protocol", STR, 0),
        5: ("hostIP", STR, 0),
    },
    "EnvVar": {1: ("name", STR, 0), 2: ("value", STR, 0), 3: ("valueFrom", "EnvVarSource", P)},
    "EnvVarSource": {
        1: ("fieldRef", "ObjectFieldSelector", P),
        2: ("resourceFieldRef", "ResourceFieldSelector", P),
        3: ("configMapKeyRef", "KeySelector", P),
        4: ("secretKeyRef", "KeySelector", P),
    },
    "ObjectFieldSelector": {1: ("apiVersion", STR, 0), 2: ("fieldPath", STR, 0)},
    "ResourceFieldSelector": {1: ("containerName", STR, 0), 2: ("resource", STR, 0), 3: ("divisor", QTY, 0)},
    "KeySelector": _KEY_SELECTOR,
    "EnvFromSource": {
        1: ("prefix", STR, 0),
        2: ("configMapRef", "RefSource", P),
        3: ("secretRef", "RefSource", P),
    },
    "RefSource": {1: ("", "LocalObjectReference", INLINE), 2: ("optional", BOOL, P)},
    "ResourceRequirements": {1: ("limits", MAP_QTY, 0), 2: ("requests", MAP_QTY, 0)},
    "VolumeMount": {
        1: ("name", STR, 0),
        2: ("readOnly", BOOL, 0),
        3: ("mountPath", STR, 0),
        4: ("subPath", STR, 0),
        5: ("mountPropagation", STR, P),
        6: ("subPathExpr", STR, 0),
    },
    "Probe": {
        1: ("", "ProbeHandler", INLINE),
        2: ("initialDelaySeconds", INT, 0),
        3: ("timeoutSeconds", INT, 0),
        4: ("periodSeconds", INT, 0),
        5: ("successThreshold", INT, 0),
        6: ("failureThreshold", INT, 0),
        7: ("terminationGracePeriodSeconds", INT, P),
    },
    "ProbeHandler": {
        1: ("exec", "ExecAction", P),
        2: ("httpGet", "HTTPGetAction", P),
        3: ("tcpSocket", "TCPSocketAction", P),
        4: ("grpc", "GRPCAction", P),
    },
    "ExecAction": {1: ("command", STR, R)},
    "HTTPGetAction": {
        1: ("path", STR, 0),
        2: ("port", INTSTR, P),
        3: ("host", STR, 0),
        4: ("scheme", STR, 0),
        5: ("httpHeaders", "HTTPHeader", R),
    },
    "HTTPHeader": {1: ("name", STR, 0), 2: ("value", STR, P)},
    "TCPSocketAction": {1: ("port", INTSTR, P), 2: ("host", STR, 0)},
    "GRPCAction": {1: ("port", INT, P), 2: ("service", STR, P)},
    "SecurityContext": {
        1: ("capabilities", "Capabilities", P),
        2: ("privileged", BOOL, P),
        4: ("runAsUser", INT, P),
        5: ("runAsNonRoot", BOOL, P),
        6: ("readOnlyRootFilesystem", BOOL, P),
        7: ("allowPrivilegeEscalation", BOOL, P),
        8: ("runAsGroup", INT, P),
    },
    "Capabilities": {1: ("add", STR, R), 2: ("drop", STR, R)},
    # apps/v1
    "Deployment": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "DeploymentSpec", 0)},
    "DeploymentSpec": {
        1: ("replicas", INT, P),
        2: ("selector", "LabelSelector", P),
        3: ("template", "PodTemplateSpec", 0),
        4: ("strategy", "DeploymentStrategy", 0),
        5: ("minReadySeconds", INT, 0),
        6: ("revisionHistoryLimit", INT, P),
        7: ("paused", BOOL, 0),
        9: ("progressDeadlineSeconds", INT, P),
    },
    "DeploymentStrategy": {1: ("type", STR, 0), 2: ("rollingUpdate", "RollingUpdateDeployment", P)},
    "RollingUpdateDeployment": {1: ("maxUnavailable", INTSTR, P), 2: ("maxSurge", INTSTR, P)},
    # batch/v1
    "Job": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "JobSpec", 0)},
    "JobSpec": {
        1: ("parallelism", INT, P),
        2: ("completions", INT, P),
        3: ("activeDeadlineSeconds", INT, P),
        4: ("selector", "LabelSelector", P),
        5: ("manualSelector", BOOL, P),
        6: ("template", "PodTemplateSpec", 0),
        7: ("backoffLimit", INT, P),
        8: ("ttlSecondsAfterFinished", INT, P),
        9: ("completionMode", STR, P),
        10: ("suspend", BOOL, P),
    },
    # authorization.k8s.io/v1
    "SelfSubjectAccessReview": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("spec", "SelfSubjectAccessReviewSpec", 0),
    },
    "SelfSubjectAccessReviewSpec": {
        1: ("resourceAttributes", "ResourceAttributes", P),
        2: ("nonResourceAttributes", "NonResourceAttributes", P),
    },
    "ResourceAttributes": {
        1: ("namespace", STR, 0),
        2: ("verb", STR, 0),
        3: ("group", STR, 0),
        4: ("version", STR, 0),
        5: ("resource", STR, 0),
        6: ("subresource", STR, 0),
        7: ("name", STR, 0),
    },
    "NonResourceAttributes": {1: ("path", STR, 0), 2: ("verb", STR, 0)},
    "ServiceAccount": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("secrets", "ObjectReference", R),
        3: ("imagePullSecrets", "LocalObjectReference", R),
        4: ("automountServiceAccountToken", BOOL, P),
    },
    "ObjectReference": {
        1: ("kind", STR, 0),
        2: ("namespace", STR, 0),
        3: ("name", STR, 0),
        4: ("uid", STR, 0),
        5: ("apiVersion", STR, 0),
        6: ("resourceVersion", STR, 0),
        7: ("fieldPath", STR, 0),
    },
    "SelfSubjectRulesReview": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("spec", "SelfSubjectRulesReviewSpec", 0),
    },
    "SelfSubjectRulesReviewSpec": {1: ("namespace", STR, 0)},
    # rbac.authorization.k8s.io/v1
    "Role": {1: ("metadata", "ObjectMeta", 0), 2: ("rules", "PolicyRule", R)},
    "ClusterRole": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("rules", "PolicyRule", R),
        3: ("aggregationRule", "AggregationRule", P),
    },
    "AggregationRule": {1: ("clusterRoleSelectors", "LabelSelector", R)},
    "PolicyRule": {
        1: ("verbs", STR, R),
        2: ("apiGroups", STR, R),
        3: ("resources", STR, R),
        4: ("resourceNames", STR, R),
        5: ("nonResourceURLs", STR, R),
    },
    "RoleBinding": {
        1: ("metadata", "ObjectMeta", 0),
        2: ("subjects", "Subject", R),
        3: ("roleRef", "RoleRef", 0),
    },
    "Subject": {1: ("kind", STR, 0), 2: ("apiGroup", STR, 0), 3: ("name", STR, 0), 4: ("namespace", STR, 0)},
    "RoleRef": {1: ("apiGroup", STR, 0), 2: ("kind", STR, 0), 3: ("name", STR, 0)},
    # authentication.k8s.io/v1
    "TokenRequest": {1: ("metadata", "ObjectMeta", 0), 2: ("spec", "TokenRequestSpec", 0)},
    "TokenRequestSpec": {
        1: ("audiences", STR, R),
        3: ("boundObjectRef", "BoundObjectReference", P),
        4: ("expirationSeconds", INT, P),
    },
    "BoundObjectReference": {
        1: ("kind", STR, 0),
        2: ("apiVersion", STR, 0),
        3: ("name", STR, 0),
        4: ("uid", STR, 0),
    },
}

# (apiVersion, kind) -> top-level message. Status is never decoded: servers ignore it on create.
KINDS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "Namespace",
    ("v1", "ConfigMap"): "ConfigMap",
    ("v1", "Secret"): "Secret",
    ("v1", "Service"): "Service",
    ("apps/v1", "Deployment"): "Deployment",
    ("batch/v1", "Job"): "Job",
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): "SelfSubjectAccessReview",
    ("v1", "ServiceAccount"): "ServiceAccount",
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): "SelfSubjectRulesReview",
    ("rbac.authorization.k8s.io/v1", "Role"): "Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "RoleBinding",
    ("authentication.k8s.io/v1", "TokenRequest"): "TokenRequest",
}


class WireError(ValueError):
    """Malformed protobuf wire data."""


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if i >= len(buf):
            raise WireError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise WireError("varint too long")


def fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Split a message into (field number, wire type, value); value is an int or the raw bytes."""
    out: list[tuple[int, int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise WireError("field number 0")
        if wt == 0:
            v, i = _varint(buf, i)
            out.append((num, wt, v))
        elif wt == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise WireError("truncated length-delimited field")
            out.append((num, wt, buf[i : i + n]))
            i += n
        elif wt == 1:
            out.append((num, wt, buf[i : i + 8]))
            i += 8
        elif wt == 5:
            out.append((num, wt, buf[i : i + 4]))
            i += 4
        else:
            raise WireError(f"unsupported wire type {wt}")
    if i != len(buf):
        raise WireError("truncated fixed-width field")
    return out


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _text(v: int | bytes) -> str:
    if not isinstance(v, bytes):
        raise WireError("expected a length-delimited field")
    return v.decode("utf-8")


def _map_entry(v: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for num, _, x in fields(v):
        if num == 1:
            key = _text(x)
        elif num == 2 and isinstance(x, bytes):
            value = x
    return key, value


def _time(v: bytes) -> str | None:
    seconds = nanos = 0
    for num, _, x in fields(v):
        if num == 1 and isinstance(x, int):
            seconds = _signed(x)
        elif num == 2 and isinstance(x, int):
            nanos = x
    if seconds == 0 and nanos == 0:
        return None  # Go's zero time marshals as null
    # metav1.Time keeps second precision on the JSON wire.
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _quantity(v: bytes) -> str:
    for num, _, x in fields(v):
        if num == 1:
            return _text(x)
    return ""


def _int_or_string(v: bytes) -> int | str:
    typ, ival, sval = 0, 0, ""
    for num, _, x in fields(v):
        if num == 1 and isinstance(x, int):
            typ = x
        elif num == 2 and isinstance(x, int):
            ival = _signed(x)
            ival = ival - (1 << 32) if ival >= 1 << 31 else ival
        elif num == 3:
            sval = _text(x)
    return sval if typ == 1 else ival


def _scalar(kind: str, v: int | bytes) -> Any:
    if kind == STR:
        return _text(v)
    if kind == BYTES:
        return base64.b64encode(v if isinstance(v, bytes) else b"").decode()
    if kind == INT:
        if isinstance(v, bytes):
            raise WireError("expected a varint")
        return _signed(v)
    if kind == BOOL:
        return bool(v)
    if not isinstance(v, bytes):
        raise WireError(f"expected a length-delimited {kind}")
    if kind == TIME:
        return _time(v)
    if kind == QTY:
        return _quantity(v)
    if kind == INTSTR:
        return _int_or_string(v)
    return decode_message(kind, v)


def _is_zero(value: Any) -> bool:
    return value is None or value == "" or value == 0 or value is False or value == {} or value == []


def decode_message(name: str, buf: bytes) -> dict[str, Any]:
    """Decode one message of :data:`MESSAGES` into its JSON form; unknown fields are skipped."""
    spec = MESSAGES[name]
    out: dict[str, Any] = {}
    for num, wt, v in fields(buf):
        f = spec.get(num)
        if f is None:
            continue
        key, kind, flags = f
        if kind in (MAP_STR, MAP_BYTES, MAP_QTY):
            if not isinstance(v, bytes):
                raise WireError(f"{key}: expected a map entry")
            k, raw = _map_entry(v)
            if kind == MAP_STR:
                val: Any = raw.decode("utf-8")
            elif kind == MAP_BYTES:
                val = base64.b64encode(raw).decode()
            else:
                val = _quantity(raw)
            out.setdefault(key, {})[k] = val
            continue
        if flags & R and kind == INT and wt == 2 and isinstance(v, bytes):
            # packed repeated integers
            j, items = 0, []
            while j < len(v):
                x, j = _varint(v, j)
                items.append(_signed(x))
            out.setdefault(key, []).extend(items)
            continue
        value = _scalar(kind, v)
        if flags & INLINE:
            out.update(value)
        elif flags & R:
            out.setdefault(key, []).append(value)
        elif flags & P:
            out[key] = value
        elif not _is_zero(value):
            out[key] = value
        else:
            out.pop(key, None)
    return out


def decode_unknown(body: bytes) -> tuple[str, str, bytes]:
    """Split an envelope into (apiVersion, kind, raw object bytes)."""
    if not body.startswith(MAGIC):
        raise bad_request("protobuf body does not start with the k8s magic prefix")
    api_version = kind = ""
    raw = b""
    encoding = ""
    try:
        for num, _, v in fields(body[len(MAGIC) :]):
            if num == 1 and isinstance(v, bytes):
                for n2, _, v2 in fields(v):
                    if n2 == 1:
                        api_version = _text(v2)
                    elif n2 == 2:
                        kind = _text(v2)
            elif num == 2 and isinstance(v, bytes):
                raw = v
            elif num == 3 and isinstance(v, bytes):
                encoding = v.decode()
    except (WireError, UnicodeDecodeError) as e:
        raise bad_request(f"unable to decode protobuf body: {e}") from e
    if encoding:
        raise unsupported_media_type(f"{CONTENT_TYPE} with contentEncoding {encoding}")
    return api_version, kind, raw


def decode_protobuf(body: bytes) -> dict[str, Any]:
    """Decode a ``application/vnd.kubernetes.protobuf`` request body to its JSON dict.

    Raises ApiError 415 for kinds we cannot decode (kubectl does not retry as JSON, so the
    message names the kind) and 400 for malformed bodies.
    """
    api_version, kind, raw = decode_unknown(body)
    message = KINDS.get((api_version, kind))
    if message is None:
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format: {CONTENT_TYPE} "
            f"(protobuf is not supported for {kind or 'unknown kind'} {api_version}; send JSON)",
        )
    try:
        obj = decode_message(message, raw)
    except (WireError, UnicodeDecodeError) as e:
        raise bad_request(f"unable to decode {kind} from protobuf: {e}") from e
    return {"apiVersion": api_version, "kind": kind, **obj}
