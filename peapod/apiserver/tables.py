"""Server-side ``meta.k8s.io/v1`` Table output, column for column like kube-apiserver's printers.

kubectl asks for ``application/json;as=Table;v=v1;g=meta.k8s.io`` on ``get`` and prints the
cells it gets; columns with ``priority > 0`` are shown only with ``-o wide``. The server always
fills every column (kube's printers run with ``Wide: true``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from peapod.api.errors import bad_request
from peapod.api.resources import ResourceInfo

Obj = dict[str, Any]
Column = dict[str, Any]

_NAME_DOC = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_AGE_DOC = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
    "guaranteed to be set in happens-before order across separate operations. Clients may not set this "
    "value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for "
    "lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)
INCLUDE_OBJECT = ("None", "Metadata", "Object")


def _col(name: str, typ: str = "string", description: str = "", priority: int = 0, fmt: str = "") -> Column:
    return {"name": name, "type": typ, "format": fmt, "description": description, "priority": priority}


NAME_COL = _col("Name", description=_NAME_DOC, fmt="name")
AGE_COL = _col("Age", description=_AGE_DOC)


# -- formatting helpers (kubectl's duration.HumanDuration and friends) --------------------------


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m" if rem == 0 else f"{minutes}m{rem}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def since(value: str | None, now: datetime) -> str:
    """translateTimestampSince: ``<unknown>`` for a missing time, else the human duration."""
    t = parse_time(value)
    if t is None:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def format_label_selector(selector: Mapping[str, Any] | None) -> str:
    """metav1.FormatLabelSelector."""
    if selector is None:
        return "<none>"
    parts: list[str] = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        op, key, values = e.get("operator", ""), e.get("key", ""), e.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    s = ",".join(parts)
    return s if s else "<none>"


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _name(obj: Obj) -> str:
    return _meta(obj).get("name", "")


def _age(obj: Obj, now: datetime) -> str:
    return since(_meta(obj).get("creationTimestamp"), now)


# -- pods ---------------------------------------------------------------------------------------


def _restartable_init(c: Obj | None) -> bool:
    return bool(c) and c.get("restartPolicy") == "Always"


def _later(a: datetime | None, b_raw: str | None) -> datetime | None:
    b = parse_time(b_raw)
    if b is None:
        return a
    return b if a is None or b > a else a


def pod_status_reason(pod: Obj) -> tuple[str, int, int, int, datetime | None]:
    """(STATUS, ready containers, total containers, restarts, last restart time) like kubectl's printPod."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    phase = status.get("phase", "")
    reason = status.get("reason") or phase
    conditions = status.get("conditions") or []
    for c in conditions:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total = len(spec.get("containers") or []) + sum(1 for c in init_specs.values() if _restartable_init(c))
    ready = restarts = sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None

    initializing = False
    init_statuses = status.get("initContainerStatuses") or []
    for i, cs in enumerate(init_statuses):
        state = cs.get("state") or {}
        last_term = (cs.get("lastState") or {}).get("terminated")
        restarts += int(cs.get("restartCount") or 0)
        if last_term:
            last_restart = _later(last_restart, last_term.get("finishedAt"))
        sidecar = _restartable_init(init_specs.get(cs.get("name")))
        if sidecar:
            sidecar_restarts += int(cs.get("restartCount") or 0)
            if last_term:
                last_sidecar_restart = _later(last_sidecar_restart, last_term.get("finishedAt"))
        term, waiting = state.get("terminated"), state.get("waiting")
        if term is not None and int(term.get("exitCode") or 0) == 0:
            continue
        if sidecar and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if term is not None:
            if not term.get("reason"):
                if term.get("signal"):
                    reason = f"Init:Signal:{term['signal']}"
                else:
                    reason = f"Init:ExitCode:{term.get('exitCode', 0)}"
            else:
                reason = "Init:" + term["reason"]
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True" for c in conditions)
    if not initializing or initialized:
        restarts, last_restart = sidecar_restarts, last_sidecar_restart
        has_running = False
        for cs in reversed(status.get("containerStatuses") or []):
            state = cs.get("state") or {}
            restarts += int(cs.get("restartCount") or 0)
            last_term = (cs.get("lastState") or {}).get("terminated")
            if last_term:
                last_restart = _later(last_restart, last_term.get("finishedAt"))
            waiting, term = state.get("waiting"), state.get("terminated")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                reason = (
                    f"Signal:{term['signal']}"
                    if term.get("signal")
                    else f"ExitCode:{term.get('exitCode', 0)}"
                )
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            has_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
            reason = "Running" if has_ready else "NotReady"

    deleting = bool(_meta(pod).get("deletionTimestamp"))
    if deleting and status.get("reason") == "NodeLost":
        reason = "Unknown"
    elif deleting and phase not in ("Succeeded", "Failed"):
        reason = "Terminating"
    return reason, ready, total, restarts, last_restart


POD_COLUMNS = [
    NAME_COL,
    _col("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
    _col("Status", description="The aggregate status of the containers in this pod."),
    _col(
        "Restarts",
        description="The number of times the containers in this pod have been restarted and when "
        "the last container in this pod has restarted.",
    ),
    AGE_COL,
    _col(
        "IP",
        priority=1,
        description="podIP address allocated to the pod. Routable at least within the "
        "cluster. Empty if not yet allocated.",
    ),
    _col("Node", priority=1, description="NodeName indicates in which node this pod is scheduled."),
    _col(
        "Nominated Node",
        priority=1,
        description="nominatedNodeName is set only when this pod preempts other "
        "pods on the node, but it cannot be scheduled right away as preemption victims receive their "
        "graceful termination periods.",
    ),
    _col(
        "Readiness Gates",
        priority=1,
        description="If specified, all readiness gates will be evaluated for pod readiness.",
    ),
]


def _pod_row(pod: Obj, now: datetime) -> tuple[list[Any], list[Obj]]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    reason, ready, total, restarts, last_restart = pod_status_reason(pod)
    restarts_str = str(restarts)
    if restarts and last_restart is not None:
        restarts_str = f"{restarts} ({human_duration((now - last_restart).total_seconds())} ago)"
    ips = status.get("podIPs") or []
    ip = (ips[0].get("ip") if ips else "") or status.get("podIP") or "<none>"
    gates = spec.get("readinessGates") or []
    gates_str = "<none>"
    if gates:
        conds = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        true = sum(1 for g in gates if conds.get(g.get("conditionType")) == "True")
        gates_str = f"{true}/{len(gates)}"
    cells = [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_str,
        _age(pod, now),
        ip,
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        gates_str,
    ]
    conditions: list[Obj] = []
    if status.get("phase") == "Succeeded":
        conditions = [
            {
                "type": "Completed",
                "status": "True",
                "reason": "Succeeded",
                "message": "The pod has completed successfully.",
            }
        ]
    elif status.get("phase") == "Failed":
        conditions = [
            {"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}
        ]
    return cells, conditions


# -- workloads ----------------------------------------------------------------------------------

_WORKLOAD_WIDE = [
    _col("Containers", priority=1, description="Names of each container in the template."),
    _col("Images", priority=1, description="Images referenced by each container in the template."),
    _col(
        "Selector",
        priority=1,
        description="Label selector for pods. Existing ReplicaSets whose pods are "
        "selected by this will be the ones affected by this deployment.",
    ),
]


def _template_cells(obj: Obj) -> list[str]:
    spec = obj.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
        format_label_selector(spec.get("selector")),
    ]


DEPLOYMENT_COLUMNS = [
    NAME_COL,
    _col("Ready", description="Number of the pod with ready state"),
    _col(
        "Up-to-date",
        "integer",
        "Total number of non-terminated pods targeted by this deployment that have "
        "the desired template spec.",
    ),
    _col(
        "Available",
        "integer",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
    ),
    AGE_COL,
    *_WORKLOAD_WIDE,
]


def _deployment_row(d: Obj, now: datetime) -> list[Any]:
    spec, status = d.get("spec") or {}, d.get("status") or {}
    desired = spec.get("replicas", 1) if spec.get("replicas") is not None else 1
    return [
        _name(d),
        f"{int(status.get('readyReplicas') or 0)}/{int(desired)}",
        int(status.get("updatedReplicas") or 0),
        int(status.get("availableReplicas") or 0),
        _age(d, now),
        *_template_cells(d),
    ]


REPLICASET_COLUMNS = [
    NAME_COL,
    _col(
        "Desired",
        "integer",
        "Replicas is the number of desired replicas. This is a pointer to distinguish "
        "between explicit zero and unspecified. Defaults to 1.",
    ),
    _col("Current", "integer", "Replicas is the most recently observed number of replicas."),
    _col(
        "Ready",
        "integer",
        "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition.",
    ),
    AGE_COL,
    *_WORKLOAD_WIDE,
]


def _replicaset_row(rs: Obj, now: datetime) -> list[Any]:
    spec, status = rs.get("spec") or {}, rs.get("status") or {}
    desired = spec.get("replicas") if spec.get("replicas") is not None else 1
    return [
        _name(rs),
        int(desired),
        int(status.get("replicas") or 0),
        int(status.get("readyReplicas") or 0),
        _age(rs, now),
        *_template_cells(rs),
    ]


# -- nodes, namespaces, small kinds -------------------------------------------------------------

NODE_COLUMNS = [
    NAME_COL,
    _col("Status", description="The status of the node"),
    _col("Roles", description="The roles of the node"),
    AGE_COL,
    _col("Version", description="Kubelet Version reported by the node."),
    _col(
        "Internal-IP",
        priority=1,
        description="List of addresses reachable to the node. Queried from cloud provider, if available.",
    ),
    _col(
        "External-IP",
        priority=1,
        description="List of addresses reachable to the node. Queried from cloud provider, if available.",
    ),
    _col(
        "OS-Image",
        priority=1,
        description="OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
    ),
    _col(
        "Kernel-Version",
        priority=1,
        description="Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
    ),
    _col(
        "Container-Runtime",
        priority=1,
        description="ContainerRuntime Version reported by the node through "
        "runtime remote API (e.g. containerd://1.4.2).",
    ),
]


def node_roles(node: Obj) -> list[str]:
    roles: set[str] = set()
    for k, v in (_meta(node).get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/"):
            role = k[len("node-role.kubernetes.io/") :]
            if role:
                roles.add(role)
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    return sorted(roles)


def _node_row(node: Obj, now: datetime) -> list[Any]:
    spec, status = node.get("spec") or {}, node.get("status") or {}
    states: list[str] = []
    for c in status.get("conditions") or []:
        if c.get("type") == "Ready":
            states = ["Ready" if c.get("status") == "True" else "NotReady"]
    if not states:
        states = ["Unknown"]
    if spec.get("unschedulable"):
        states.append("SchedulingDisabled")
    info = status.get("nodeInfo") or {}

    def address(kind: str) -> str:
        for a in status.get("addresses") or []:
            if a.get("type") == kind:
                return a.get("address", "")
        return "<none>"

    return [
        _name(node),
        ",".join(states),
        ",".join(node_roles(node)) or "<none>",
        _age(node, now),
        info.get("kubeletVersion", ""),
        address("InternalIP"),
        address("ExternalIP"),
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


NAMESPACE_COLUMNS = [NAME_COL, _col("Status", description="The status of the namespace"), AGE_COL]
CONFIGMAP_COLUMNS = [NAME_COL, _col("Data", "string", "Data contains the configuration data."), AGE_COL]
SECRET_COLUMNS = [
    NAME_COL,
    _col("Type", description="Used to facilitate programmatic handling of secret data."),
    _col("Data", "string", "Data contains the secret data."),
    AGE_COL,
]
SERVICEACCOUNT_COLUMNS = [
    NAME_COL,
    _col(
        "Secrets",
        "string",
        "Secrets is a list of the secrets in the same "
        "namespace that pods running using this ServiceAccount are allowed "
        "to use.",
    ),
    AGE_COL,
]
LEASE_COLUMNS = [
    NAME_COL,
    _col("Holder", description="holderIdentity contains the identity of the holder of a current lease."),
    AGE_COL,
]
DEFAULT_COLUMNS = [NAME_COL, AGE_COL]

EVENT_COLUMNS = [
    _col("Last Seen", description="The time at which the most recent occurrence of this event was recorded."),
    _col("Type", description="Type of this event (Normal, Warning), new types could be added in the future"),
    _col(
        "Reason",
        description="This should be a short, machine understandable string that gives the reason "
        "for the transition into the object's current status.",
    ),
    _col("Object", description="The object that this event is about."),
    _col(
        "Subobject",
        priority=1,
        description="If referring to a piece of an object instead of an entire "
        "object, this string should contain a valid JSON/Go field access statement.",
    ),
    _col(
        "Source",
        priority=1,
        description="The component reporting this event. Should be a short machine understandable string.",
    ),
    _col("Message", description="A human-readable description of the status of this operation."),
    _col("First Seen", priority=1, description="The time at which the event was first recorded."),
    _col("Count", priority=1, description="The number of times this event has occurred."),
    _col("Name", priority=1, description=_NAME_DOC, fmt="name"),
]


def _event_row(ev: Obj, now: datetime) -> list[Any]:
    # core/v1 and events.k8s.io/v1 shapes.
    first_raw = ev.get("firstTimestamp") or ev.get("deprecatedFirstTimestamp") or ev.get("eventTime")
    first = since(first_raw, now)
    last_raw = ev.get("lastTimestamp") or ev.get("deprecatedLastTimestamp")
    last = since(last_raw, now) if last_raw else first
    count = int(ev.get("count") or ev.get("deprecatedCount") or 0)
    series = ev.get("series")
    if series:
        last = since(series.get("lastObservedTime"), now)
        count = int(series.get("count") or 0)
    elif count == 0:
        count = 1
    ref = ev.get("involvedObject") or ev.get("regarding") or {}
    kind = (ref.get("kind") or "").lower()
    target = f"{kind}/{ref['name']}" if ref.get("name") else kind
    source = ev.get("source") or {}
    component = source.get("component") or ev.get("reportingController") or ev.get("reportingComponent") or ""
    host = source.get("host") or ev.get("reportingInstance") or ""
    src = ", ".join(p for p in (component, host) if p)
    message = (ev.get("message") or ev.get("note") or "").strip()
    return [
        last,
        ev.get("type", ""),
        ev.get("reason", ""),
        target,
        ref.get("fieldPath", ""),
        src,
        message,
        first,
        count,
        _name(ev),
    ]


Printer = Callable[[Obj, datetime], list[Any]]

_PRINTERS: dict[tuple[str, str], tuple[list[Column], Printer]] = {
    ("apps", "deployments"): (DEPLOYMENT_COLUMNS, _deployment_row),
    ("apps", "replicasets"): (REPLICASET_COLUMNS, _replicaset_row),
    ("", "nodes"): (NODE_COLUMNS, _node_row),
    ("", "namespaces"): (
        NAMESPACE_COLUMNS,
        lambda o, now: [_name(o), (o.get("status") or {}).get("phase", ""), _age(o, now)],
    ),
    ("", "configmaps"): (
        CONFIGMAP_COLUMNS,
        lambda o, now: [_name(o), len(o.get("data") or {}) + len(o.get("binaryData") or {}), _age(o, now)],
    ),
    ("", "secrets"): (
        SECRET_COLUMNS,
        lambda o, now: [_name(o), o.get("type", ""), len(o.get("data") or {}), _age(o, now)],
    ),
    ("", "serviceaccounts"): (
        SERVICEACCOUNT_COLUMNS,
        lambda o, now: [_name(o), len(o.get("secrets") or []), _age(o, now)],
    ),
    ("", "events"): (EVENT_COLUMNS, _event_row),
    ("events.k8s.io", "events"): (EVENT_COLUMNS, _event_row),
    ("coordination.k8s.io", "leases"): (
        LEASE_COLUMNS,
        lambda o, now: [_name(o), (o.get("spec") or {}).get("holderIdentity", ""), _age(o, now)],
    ),
}


def columns_for(info: ResourceInfo) -> list[Column]:
    if (info.group, info.resource) == ("", "pods"):
        return POD_COLUMNS
    return _PRINTERS.get((info.group, info.resource), (DEFAULT_COLUMNS, None))[0]


def _row_object(info: ResourceInfo, obj: Obj, include_object: str) -> Obj | None:
    if include_object == "Object":
        return obj
    if include_object == "Metadata":
        return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": _meta(obj)}
    return None


def to_table(
    info: ResourceInfo,
    objects: list[Obj],
    *,
    now: datetime,
    include_object: str = "Metadata",
    list_meta: Mapping[str, Any] | None = None,
) -> Obj:
    """Render ``objects`` of resource ``info`` as a meta.k8s.io/v1 Table."""
    if include_object not in INCLUDE_OBJECT:
        raise bad_request(f"includeObject: unsupported value {include_object!r}")
    rows: list[Obj] = []
    is_pod = (info.group, info.resource) == ("", "pods")
    printer = None if is_pod else _PRINTERS.get((info.group, info.resource), (None, None))[1]
    for obj in objects:
        conditions: list[Obj] = []
        if is_pod:
            cells, conditions = _pod_row(obj, now)
        elif printer is not None:
            cells = printer(obj, now)
        else:
            cells = [_name(obj), _age(obj, now)]
        row: Obj = {"cells": cells}
        if conditions:
            row["conditions"] = conditions
        ro = _row_object(info, obj, include_object)
        if ro is not None:
            row["object"] = ro
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(list_meta or {}),
        "columnDefinitions": columns_for(info),
        "rows": rows,
    }


def wants_table(accept: str | None) -> bool:
    """Whether an Accept header asks for ``as=Table`` in meta.k8s.io (v1 or v1beta1) as JSON."""
    for part in (accept or "").split(","):
        fields = [f.strip() for f in part.split(";")]
        params = {}
        for f in fields[1:]:
            k, _, v = f.partition("=")
            params[k.strip()] = v.strip()
        if (
            fields[0] in ("application/json", "*/*", "application/*")
            and params.get("as") == "Table"
            and params.get("g") == "meta.k8s.io"
            and params.get("v") in ("v1", "v1beta1")
        ):
            return True
    return False


def table_include_object(query: Mapping[str, str]) -> str:
    """The ``includeObject`` query parameter: None | Metadata (default) | Object; 400 otherwise."""
    value = query.get("includeObject") or "Metadata"
    if value not in INCLUDE_OBJECT:
        raise bad_request(f'Invalid value: "{value}": includeObject must be one of None, Metadata, Object')
    return value
