import pytest

from peapod.api.resources import REGISTRY
from peapod.apiserver import discovery

KUBECTL_130_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)
KUBECTL_127_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


def test_api_versions():
    doc = discovery.api_versions("10.0.0.1:6443")
    assert doc == {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}],
    }


def test_group_list_lists_only_groups_serving_resources():
    doc = discovery.api_group_list()
    assert doc["kind"] == "APIGroupList" and doc["apiVersion"] == "v1"
    names = [g["name"] for g in doc["groups"]]
    assert names == [
        "apps", "events.k8s.io", "authorization.k8s.io", "coordination.k8s.io", "metrics.k8s.io",
        "rbac.authorization.k8s.io",
    ]
    apps = doc["groups"][0]
    assert apps["versions"] == [{"groupVersion": "apps/v1", "version": "v1"}]
    assert apps["preferredVersion"] == {"groupVersion": "apps/v1", "version": "v1"}
    assert "autoscaling" not in names and "" not in names


def test_api_group():
    assert discovery.api_group("apps")["preferredVersion"]["groupVersion"] == "apps/v1"
    assert discovery.api_group("autoscaling") is None


def test_core_resource_list():
    doc = discovery.api_resource_list("", "v1")
    assert doc["kind"] == "APIResourceList" and doc["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in doc["resources"]}
    pods = by_name["pods"]
    assert pods["singularName"] == "pod" and pods["namespaced"] is True and pods["kind"] == "Pod"
    assert pods["shortNames"] == ["po"] and pods["categories"] == ["all"]
    assert pods["storageVersionHash"] == "xPOwRZ+Yhw8="  # what kube-apiserver reports for pods
    assert by_name["pods/status"]["verbs"] == ["get", "patch", "update"]
    assert by_name["pods/log"] == {
        "name": "pods/log",
        "singularName": "",
        "namespaced": True,
        "kind": "Pod",
        "verbs": ["get"],
    }
    assert by_name["nodes"]["namespaced"] is False
    token = by_name["serviceaccounts/token"]
    assert (token["group"], token["version"], token["kind"]) == ("authentication.k8s.io", "v1", "TokenRequest")


def test_scale_subresource_is_autoscaling_v1():
    doc = discovery.api_resource_list("apps", "v1")
    scale = next(r for r in doc["resources"] if r["name"] == "deployments/scale")
    assert scale["group"] == "autoscaling" and scale["version"] == "v1" and scale["kind"] == "Scale"
    assert scale["verbs"] == ["get", "patch", "update"]
    status = next(r for r in doc["resources"] if r["name"] == "deployments/status")
    assert "group" not in status


def test_unknown_group_version():
    assert discovery.api_resource_list("autoscaling", "v1") is None
    assert discovery.api_resource_list("apps", "v2") is None


@pytest.mark.parametrize("version", ["v2", "v2beta1"])
def test_aggregated_discovery(version):
    core = discovery.aggregated_discovery(True, version)
    assert core["kind"] == "APIGroupDiscoveryList"
    assert core["apiVersion"] == f"apidiscovery.k8s.io/{version}"
    assert len(core["items"]) == 1 and "name" not in core["items"][0]["metadata"]
    v1 = core["items"][0]["versions"][0]
    assert v1["version"] == "v1" and v1["freshness"] == "Current"
    pods = next(r for r in v1["resources"] if r["resource"] == "pods")
    assert pods["responseKind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert pods["scope"] == "Namespaced" and pods["singularResource"] == "pod"
    assert pods["shortNames"] == ["po"] and pods["categories"] == ["all"]
    subs = {s["subresource"]: s for s in pods["subresources"]}
    assert subs["exec"]["responseKind"]["kind"] == "PodExecOptions"
    nodes = next(r for r in v1["resources"] if r["resource"] == "nodes")
    assert nodes["scope"] == "Cluster"

    apis = discovery.aggregated_discovery(False, version)
    groups = [i["metadata"]["name"] for i in apis["items"]]
    assert groups == [g["name"] for g in discovery.api_group_list()["groups"]]
    apps = apis["items"][0]["versions"][0]["resources"]
    dep = next(r for r in apps if r["resource"] == "deployments")
    scale = next(s for s in dep["subresources"] if s["subresource"] == "scale")
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}


def test_aggregated_discovery_covers_registry():
    served = {(r.group, r.version, r.resource) for r in REGISTRY.resources}
    seen = set()
    for core in (True, False):
        for item in discovery.aggregated_discovery(core)["items"]:
            for v in item["versions"]:
                for r in v["resources"]:
                    seen.add((item["metadata"].get("name", ""), v["version"], r["resource"]))
    assert seen == served


def test_aggregated_rejects_unknown_version():
    with pytest.raises(ValueError):
        discovery.aggregated_discovery(True, "v3")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (KUBECTL_130_ACCEPT, ("v2", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")),
        (
            KUBECTL_127_ACCEPT,
            ("v2beta1", "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"),
        ),
        ("application/json", (None, "application/json")),
        ("", (None, "application/json")),
        ("*/*", (None, "application/json")),
        # protobuf aggregated is skipped, next acceptable JSON wins
        (
            "application/vnd.kubernetes.protobuf;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
            ("v2beta1", "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"),
        ),
        # unknown discovery version falls through to legacy
        (
            "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json",
            (None, "application/json"),
        ),
        # quality values are honoured
        (
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList;q=0.5,"
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
            ("v2beta1", "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"),
        ),
    ],
)
def test_negotiate_discovery(accept, expected):
    assert discovery.negotiate_discovery(accept) == expected
