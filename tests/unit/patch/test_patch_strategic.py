"""Strategic merge patch: cases as kubectl produces them (apply, set image, patch, rollout restart)."""

import copy

import pytest

from peapod.api.errors import ApiError
from peapod.api.patch import apply_strategic_merge_patch


def deployment(containers, **spec):
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}},
            **spec,
        },
    }


def smp(obj, patch, gvk=("apps", "v1", "Deployment")):
    return apply_strategic_merge_patch(obj, patch, *gvk)


def containers_of(obj):
    return obj["spec"]["template"]["spec"]["containers"]


def tpl(spec):
    return {"spec": {"template": {"spec": spec}}}


NGINX = {
    "name": "nginx",
    "image": "nginx:1.25",
    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
}
SIDE = {"name": "side", "image": "busybox"}

CASES = [
    (
        "apply changes one image",
        [NGINX, SIDE],
        tpl(
            {
                "$setElementOrder/containers": [{"name": "nginx"}, {"name": "side"}],
                "containers": [{"name": "nginx", "image": "nginx:1.26"}],
            }
        ),
        [{**NGINX, "image": "nginx:1.26"}, SIDE],
    ),
    (
        "apply adds an env entry, keeping the order from $setElementOrder",
        [NGINX],
        tpl(
            {
                "$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [
                    {
                        "name": "nginx",
                        "$setElementOrder/env": [{"name": "A"}, {"name": "C"}, {"name": "B"}],
                        "env": [{"name": "C", "value": "3"}],
                    }
                ],
            }
        ),
        [
            {
                **NGINX,
                "env": [
                    {"name": "A", "value": "1"},
                    {"name": "C", "value": "3"},
                    {"name": "B", "value": "2"},
                ],
            }
        ],
    ),
    (
        "apply removes an env entry",
        [NGINX],
        tpl(
            {
                "$setElementOrder/containers": [{"name": "nginx"}],
                "containers": [
                    {
                        "name": "nginx",
                        "$setElementOrder/env": [{"name": "B"}],
                        "env": [{"$patch": "delete", "name": "A"}],
                    }
                ],
            }
        ),
        [{**NGINX, "env": [{"name": "B", "value": "2"}]}],
    ),
    (
        "apply removes a container",
        [NGINX, SIDE],
        tpl(
            {
                "$setElementOrder/containers": [{"name": "side"}],
                "containers": [{"$patch": "delete", "name": "nginx"}],
            }
        ),
        [SIDE],
    ),
    (
        "apply reorders containers",
        [NGINX, SIDE],
        tpl({"$setElementOrder/containers": [{"name": "side"}, {"name": "nginx"}]}),
        [SIDE, NGINX],
    ),
    (
        # strategicpatch's mergeSortedSlice puts patch items not in the live list first
        "a new container without $setElementOrder goes first",
        [NGINX],
        tpl({"containers": [{"name": "side", "image": "busybox"}]}),
        [SIDE, NGINX],
    ),
    (
        "set image",
        [NGINX, SIDE],
        tpl({"containers": [{"name": "side", "image": "busybox:2"}]}),
        [NGINX, {**SIDE, "image": "busybox:2"}],
    ),
    (
        "null deletes a field of a list element",
        [NGINX],
        tpl({"containers": [{"name": "nginx", "env": None}]}),
        [{"name": "nginx", "image": "nginx:1.25"}],
    ),
    (
        "$patch: replace on a list replaces it",
        [NGINX, SIDE],
        tpl({"containers": [{"name": "x", "image": "y"}, {"$patch": "replace"}]}),
        [{"name": "x", "image": "y"}],
    ),
    (
        "atomic lists (args) are replaced",
        [{**SIDE, "args": ["a", "b"]}],
        tpl({"containers": [{"name": "side", "args": ["c"]}]}),
        [{**SIDE, "args": ["c"]}],
    ),
    (
        "ports merge by containerPort",
        [{**SIDE, "ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 443}]}],
        tpl(
            {
                "containers": [
                    {
                        "name": "side",
                        "ports": [{"containerPort": 443, "name": "https"}, {"containerPort": 8080}],
                    }
                ]
            }
        ),
        [
            {
                **SIDE,
                "ports": [
                    {"containerPort": 80, "name": "http"},
                    {"containerPort": 443, "name": "https"},
                    {"containerPort": 8080},
                ],
            }
        ],
    ),
    (
        "a new list with directives inside is cleaned",
        [SIDE],
        tpl(
            {
                "containers": [
                    {
                        "name": "side",
                        "$setElementOrder/env": [{"name": "A"}],
                        "env": [{"name": "A", "value": "1"}],
                    }
                ]
            }
        ),
        [{**SIDE, "env": [{"name": "A", "value": "1"}]}],
    ),
]


@pytest.mark.parametrize(("name", "live", "patch", "expected"), CASES, ids=[c[0] for c in CASES])
def test_container_lists(name, live, patch, expected):
    obj = deployment(copy.deepcopy(live))
    before = copy.deepcopy(obj)
    out = smp(obj, patch)
    assert containers_of(out) == expected
    assert obj == before


def test_labels_and_annotations_map_merge():
    obj = deployment([SIDE])
    out = smp(obj, {"metadata": {"labels": {"tier": "web", "app": None}, "annotations": {"a": "b"}}})
    assert out["metadata"] == {"name": "web", "labels": {"tier": "web"}, "annotations": {"a": "b"}}


def test_rollout_restart_annotation_on_template():
    obj = deployment([SIDE])
    patch = {
        "spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now"}}}}
    }
    out = smp(obj, patch)
    assert out["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "now"},
    }


def test_map_directives():
    obj = deployment([SIDE])
    out = smp(obj, {"spec": {"selector": {"$patch": "replace", "matchLabels": {"x": "y"}}}})
    assert out["spec"]["selector"] == {"matchLabels": {"x": "y"}}
    out = smp(obj, {"metadata": {"labels": {"$patch": "delete"}}})
    assert out["metadata"]["labels"] == {}


def test_primitive_merge_list_union_and_delete():
    pod = {"metadata": {"name": "p", "finalizers": ["a", "b"]}}
    out = smp(pod, {"metadata": {"finalizers": ["c", "a"]}}, ("", "v1", "Pod"))
    assert sorted(out["metadata"]["finalizers"]) == ["a", "b", "c"]
    out = smp(pod, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}, ("", "v1", "Pod"))
    assert out["metadata"]["finalizers"] == ["b"]
    out = smp(pod, {"metadata": {"$setElementOrder/finalizers": ["b", "a"]}}, ("", "v1", "Pod"))
    assert out["metadata"]["finalizers"] == ["b", "a"]


def test_retain_keys_on_strategy_and_volumes():
    obj = deployment([SIDE], strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}})
    out = smp(obj, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    obj["spec"]["template"]["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
    patch = tpl(
        {"volumes": [{"name": "v", "$retainKeys": ["configMap", "name"], "configMap": {"name": "cm"}}]}
    )
    out = smp(obj, patch)
    assert out["spec"]["template"]["spec"]["volumes"] == [{"name": "v", "configMap": {"name": "cm"}}]


def test_unknown_kind_merges_maps_and_replaces_lists():
    cr = {"spec": {"items": [{"name": "a", "x": 1}], "m": {"a": 1}}}
    out = smp(
        cr, {"spec": {"items": [{"name": "a", "y": 2}], "m": {"b": 2}}}, ("example.com", "v1", "Widget")
    )
    assert out == {"spec": {"items": [{"name": "a", "y": 2}], "m": {"a": 1, "b": 2}}}


def test_pod_labels_and_image():
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "a"}]},
    }
    out = smp(
        pod,
        {"metadata": {"labels": {"x": "1"}}, "spec": {"containers": [{"name": "c", "image": "b"}]}},
        ("", "v1", "Pod"),
    )
    assert out["metadata"]["labels"] == {"x": "1"}
    assert out["spec"]["containers"] == [{"name": "c", "image": "b"}]


@pytest.mark.parametrize(
    ("patch", "code", "message"),
    [
        (
            {"metadata": {"labels": {"$patch": "merge"}}},
            500,
            "unknown patch type: merge in map: map[$patch:merge]",
        ),
        (
            tpl({"containers": [{"image": "x"}]}),
            500,
            "map: map[image:x] does not contain declared merge key: name",
        ),
        (
            {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}},
            400,
            "invalid patch format of retainKeys",
        ),
        ({"spec": {"strategy": {"$retainKeys": "type"}}}, 400, "invalid patch format of retainKeys"),
        (
            tpl({"containers": [{"name": "side", "$patch": "merge"}]}),
            500,
            "merging lists cannot yet be specified in the patch",
        ),
    ],
)
def test_errors(patch, code, message):
    with pytest.raises(ApiError) as e:
        smp(deployment([SIDE], strategy={"type": "Recreate"}), patch)
    assert e.value.code == code
    assert e.value.message == message


def test_non_object_patch_is_400():
    with pytest.raises(ApiError) as e:
        apply_strategic_merge_patch({}, [1], "", "v1", "Pod")  # type: ignore[arg-type]
    assert e.value.code == 400
