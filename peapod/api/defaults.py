"""Defaulting, as kube-apiserver's generated defaulters, create strategies and the default admission
plugins ServiceAccount (the name only) and Priority leave objects; DefaultTolerationSeconds, whose
seconds are server flags, is in :mod:`peapod.apiserver.admission`.

``apply_defaults(group, version, kind, obj)`` mutates ``obj`` in place and is idempotent. Objects are
wire-format JSON dicts. ``qos_class(pod)`` computes ``status.qosClass`` the way the API server does
on create.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from typing import Any

from peapod.api.quantity import parse_quantity

DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS = 30
DEFAULT_SCHEDULER_NAME = "default-scheduler"
DEFAULT_SERVICE_ACCOUNT = "default"
DEFAULT_MODE = 0o644  # 420: secret, configMap, downwardAPI and projected volumes

Obj = dict[str, Any]


def _set(d: Obj, key: str, value: Any) -> None:
    if d.get(key) is None:
        d[key] = value


def _dict(d: Obj, key: str) -> Obj:
    v = d.get(key)
    if not isinstance(v, dict):
        v = {}
        d[key] = v
    return v


def _dicts(value: Any) -> list[Obj]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


# -- containers -------------------------------------------------------------------------------------


def image_tag(image: str) -> str:
    """The tag of an image reference: "" with a digest and no tag, "latest" with neither."""
    ref = image
    digest = ""
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        return last.rsplit(":", 1)[1]
    return "" if digest else "latest"


def default_pull_policy(image: str) -> str:
    return "Always" if image_tag(image) == "latest" else "IfNotPresent"


def _default_handler(h: Obj | None) -> None:
    if not isinstance(h, dict):
        return
    http = h.get("httpGet")
    if isinstance(http, dict):
        _set(http, "path", "/")
        _set(http, "scheme", "HTTP")


def _default_probe(p: Any) -> None:
    if not isinstance(p, dict):
        return
    _set(p, "timeoutSeconds", 1)
    _set(p, "periodSeconds", 10)
    _set(p, "successThreshold", 1)
    _set(p, "failureThreshold", 3)
    _default_handler(p)


def _default_container(c: Obj) -> None:
    image = c.get("image")
    if c.get("imagePullPolicy") in (None, ""):
        c["imagePullPolicy"] = default_pull_policy(image if isinstance(image, str) else "")
    if c.get("terminationMessagePath") in (None, ""):
        c["terminationMessagePath"] = "/dev/termination-log"
    if c.get("terminationMessagePolicy") in (None, ""):
        c["terminationMessagePolicy"] = "File"
    _dict(c, "resources")
    for port in _dicts(c.get("ports")):
        if port.get("protocol") in (None, ""):
            port["protocol"] = "TCP"
    for env in _dicts(c.get("env")):
        ref = (env.get("valueFrom") or {}).get("fieldRef") if isinstance(env.get("valueFrom"), dict) else None
        if isinstance(ref, dict) and ref.get("apiVersion") in (None, ""):
            ref["apiVersion"] = "v1"
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(key))
    lifecycle = c.get("lifecycle")
    if isinstance(lifecycle, dict):
        _default_handler(lifecycle.get("postStart"))
        _default_handler(lifecycle.get("preStop"))


def _default_requests_from_limits(c: Obj) -> None:
    res = c.get("resources")
    if not isinstance(res, dict) or not isinstance(res.get("limits"), dict) or not res["limits"]:
        return
    requests = res.get("requests")
    if not isinstance(requests, dict):
        requests = {}
        res["requests"] = requests
    for name, value in res["limits"].items():
        requests.setdefault(name, value)


def _default_volume(v: Obj) -> None:
    sources = [k for k in v if k != "name"]
    if not sources:
        v["emptyDir"] = {}
    for key in ("secret", "configMap", "downwardAPI", "projected"):
        src = v.get(key)
        if isinstance(src, dict):
            _set(src, "defaultMode", DEFAULT_MODE)
    host = v.get("hostPath")
    if isinstance(host, dict):
        _set(host, "type", "")
    projected = v.get("projected")
    if isinstance(projected, dict):
        for s in _dicts(projected.get("sources")):
            sat = s.get("serviceAccountToken")
            if isinstance(sat, dict):
                _set(sat, "expirationSeconds", 3600)
            dapi = s.get("downwardAPI")
            if isinstance(dapi, dict):
                for item in _dicts(dapi.get("items")):
                    ref = item.get("fieldRef")
                    if isinstance(ref, dict):
                        _set(ref, "apiVersion", "v1")
    dapi = v.get("downwardAPI")
    if isinstance(dapi, dict):
        for item in _dicts(dapi.get("items")):
            ref = item.get("fieldRef")
            if isinstance(ref, dict):
                _set(ref, "apiVersion", "v1")


def default_pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec and friends: what a pod template inside a Deployment also gets."""
    if spec.get("dnsPolicy") in (None, ""):
        spec["dnsPolicy"] = "ClusterFirst"
    if spec.get("restartPolicy") in (None, ""):
        spec["restartPolicy"] = "Always"
    _dict(spec, "securityContext")
    _set(spec, "terminationGracePeriodSeconds", DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS)
    if spec.get("schedulerName") in (None, ""):
        spec["schedulerName"] = DEFAULT_SCHEDULER_NAME
    # serviceAccount is the deprecated mirror of serviceAccountName (conversion keeps them equal).
    if spec.get("serviceAccountName") in (None, "") and spec.get("serviceAccount"):
        spec["serviceAccountName"] = spec["serviceAccount"]
    if spec.get("serviceAccountName") and not spec.get("serviceAccount"):
        spec["serviceAccount"] = spec["serviceAccountName"]
    for c in _dicts(spec.get("containers")) + _dicts(spec.get("initContainers")):
        _default_container(c)
    for c in _dicts(spec.get("ephemeralContainers")):
        _default_container(c)
    for v in _dicts(spec.get("volumes")):
        _default_volume(v)
    if spec.get("hostNetwork"):
        for c in _dicts(spec.get("containers")) + _dicts(spec.get("initContainers")):
            for port in _dicts(c.get("ports")):
                if not port.get("hostPort") and port.get("containerPort"):
                    port["hostPort"] = port["containerPort"]


def default_pod(pod: Obj) -> None:
    spec = _dict(pod, "spec")
    default_pod_spec(spec)
    for c in _dicts(spec.get("containers")) + _dicts(spec.get("initContainers")):
        _default_requests_from_limits(c)
    _set(spec, "enableServiceLinks", True)
    # Admission: ServiceAccount, Priority (DefaultTolerationSeconds is in peapod.apiserver.admission).
    if spec.get("serviceAccountName") in (None, ""):
        spec["serviceAccountName"] = DEFAULT_SERVICE_ACCOUNT
    spec["serviceAccount"] = spec["serviceAccountName"]
    _set(spec, "priority", 0)
    if spec.get("preemptionPolicy") in (None, ""):
        spec["preemptionPolicy"] = "PreemptLowerPriority"
    status = _dict(pod, "status")
    if status.get("phase") in (None, ""):
        status["phase"] = "Pending"
    if status.get("qosClass") in (None, ""):
        status["qosClass"] = qos_class(pod)


def _default_template(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    template = _dict(spec, "template")
    default_pod_spec(_dict(template, "spec"))


def default_replicaset(rs: Obj) -> None:
    spec = _dict(rs, "spec")
    _set(spec, "replicas", 1)
    _default_template(rs)


def default_deployment(d: Obj) -> None:
    spec = _dict(d, "spec")
    _set(spec, "replicas", 1)
    strategy = _dict(spec, "strategy")
    if strategy.get("type") in (None, ""):
        strategy["type"] = "RollingUpdate"
    if strategy["type"] == "RollingUpdate":
        ru = _dict(strategy, "rollingUpdate")
        _set(ru, "maxUnavailable", "25%")
        _set(ru, "maxSurge", "25%")
    _set(spec, "revisionHistoryLimit", 10)
    _set(spec, "progressDeadlineSeconds", 600)
    _default_template(d)


def default_secret(s: Obj) -> None:
    if s.get("type") in (None, ""):
        s["type"] = "Opaque"


def default_namespace(ns: Obj) -> None:
    spec = _dict(ns, "spec")
    if not spec.get("finalizers"):
        spec["finalizers"] = ["kubernetes"]
    status = _dict(ns, "status")
    if status.get("phase") in (None, ""):
        status["phase"] = "Active"


def default_node(node: Obj) -> None:
    status = node.get("status")
    if isinstance(status, dict) and isinstance(status.get("capacity"), dict) and "allocatable" not in status:
        status["allocatable"] = dict(status["capacity"])


def _default_rbac_binding(obj: Obj) -> None:
    from peapod.api.validation.rbac import default_binding

    default_binding(obj)


_DEFAULTERS: dict[tuple[str, str, str], Callable[[Obj], None]] = {
    ("", "v1", "Pod"): default_pod,
    ("", "v1", "Secret"): default_secret,
    ("", "v1", "Namespace"): default_namespace,
    ("", "v1", "Node"): default_node,
    ("apps", "v1", "ReplicaSet"): default_replicaset,
    ("apps", "v1", "Deployment"): default_deployment,
    ("rbac.authorization.k8s.io", "v1", "RoleBinding"): _default_rbac_binding,
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"): _default_rbac_binding,
}


def apply_defaults(group: str, version: str, kind: str, obj: Obj) -> None:
    """Fill in defaults in place; kinds Kubernetes does not default (ConfigMap, ServiceAccount, Lease,
    Event) are left untouched."""
    fn = _DEFAULTERS.get((group, version, kind))
    if fn is not None:
        fn(obj)


# -- QoS --------------------------------------------------------------------------------------------

_QOS_RESOURCES = ("cpu", "memory")


def _quantity(v: Any) -> Fraction | None:
    try:
        return parse_quantity(v)
    except ValueError:
        return None


def qos_class(pod: Obj) -> str:
    """Guaranteed, Burstable or BestEffort, as pkg/apis/core/helper/qos.GetPodQOS computes it."""
    spec = pod.get("spec") or {}
    requests: dict[str, Fraction] = {}
    limits: dict[str, Fraction] = {}
    guaranteed = True
    for c in _dicts(spec.get("containers")) + _dicts(spec.get("initContainers")):
        res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
        c_lim = res.get("limits") if isinstance(res.get("limits"), dict) else {}
        # Requests default to limits (the API server defaults before it computes the class).
        c_req = {**c_lim, **(res.get("requests") if isinstance(res.get("requests"), dict) else {})}
        for name, raw in c_req.items():
            q = _quantity(raw)
            if name in _QOS_RESOURCES and q is not None and q != 0:
                requests[name] = requests.get(name, Fraction(0)) + q
        found = set()
        for name, raw in c_lim.items():
            q = _quantity(raw)
            if name in _QOS_RESOURCES and q is not None and q != 0:
                found.add(name)
                limits[name] = limits.get(name, Fraction(0)) + q
        if set(_QOS_RESOURCES) - found:
            guaranteed = False
    if not requests and not limits:
        return "BestEffort"
    if guaranteed:
        for name, req in requests.items():
            if limits.get(name) != req:
                guaranteed = False
                break
    if guaranteed and len(requests) == len(limits):
        return "Guaranteed"
    return "Burstable"
