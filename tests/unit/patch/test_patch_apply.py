"""Server-side apply: ownership, pruning, conflicts."""

import copy

import pytest

from peapod.api.errors import ApiError
from peapod.api.patch import server_side_apply, update_managed_fields

T0, T1, T2 = "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"
GVK = {"group": "apps", "version": "v1", "kind": "Deployment"}


def deploy(replicas=None, image="nginx", labels=None, env=None):
    c = {"name": "nginx", "image": image}
    if env is not None:
        c["env"] = env
    spec = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [c]}},
    }
    if replicas is not None:
        spec["replicas"] = replicas
    meta = {"name": "web"}
    if labels is not None:
        meta["labels"] = labels
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def ssa(live, cfg, manager="kubectl", force=False, now=T1):
    return server_side_apply(live, cfg, manager=manager, force=force, now=now, **GVK)


def fields_of(obj, manager):
    (e,) = [e for e in obj["metadata"]["managedFields"] if e["manager"] == manager]
    return e


def test_create_by_apply():
    out = ssa(None, deploy(replicas=2, labels={"a": "b"}), now=T0)
    e = fields_of(out, "kubectl")
    assert (e["operation"], e["apiVersion"], e["time"], e["fieldsType"]) == (
        "Apply",
        "apps/v1",
        T0,
        "FieldsV1",
    )
    assert e["fieldsV1"] == {
        "f:metadata": {"f:labels": {"f:a": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {'k:{"name":"nginx"}': {".": {}, "f:image": {}, "f:name": {}}}},
            },
        },
    }
    assert out["spec"]["replicas"] == 2


def test_conflict_with_client_side_apply_manager():
    created = update_managed_fields(
        None,
        deploy(replicas=1),
        manager="kubectl-client-side-apply",
        operation="Update",
        api_version="apps/v1",
        now=T0,
        **GVK,
    )
    with pytest.raises(ApiError) as e:
        ssa(created, deploy(replicas=3))
    assert e.value.code == 409
    assert e.value.reason == "Conflict"
    assert e.value.message == (
        "Apply failed with 1 conflict: "
        'conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas'
    )
    assert e.value.details == {
        "causes": [
            {
                "reason": "FieldManagerConflict",
                "message": 'conflict with "kubectl-client-side-apply" using apps/v1',
                "field": ".spec.replicas",
            }
        ]
    }
    # same values: shared ownership, no conflict
    same = ssa(created, deploy(replicas=1))
    assert "f:replicas" in fields_of(same, "kubectl")["fieldsV1"]["f:spec"]
    assert "f:replicas" in fields_of(same, "kubectl-client-side-apply")["fieldsV1"]["f:spec"]


def test_force_takes_ownership():
    created = update_managed_fields(
        None, deploy(replicas=1), manager="editor", operation="Update", api_version="apps/v1", now=T0, **GVK
    )
    out = ssa(created, deploy(replicas=3, image="nginx:2"), force=True)
    assert out["spec"]["replicas"] == 3
    editor = fields_of(out, "editor")["fieldsV1"]
    assert "f:replicas" not in editor["f:spec"]
    assert "f:image" not in editor["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"nginx"}']


def test_multiple_conflicts_message():
    a = ssa(None, deploy(replicas=1), manager="one", now=T0)
    with pytest.raises(ApiError) as e:
        ssa(a, deploy(replicas=2, image="other"), manager="two")
    assert e.value.message == (
        'Apply failed with 2 conflicts: conflicts with "one":\n'
        '- .spec.replicas\n- .spec.template.spec.containers[name="nginx"].image'
    )
    assert [c["field"] for c in e.value.details["causes"]] == [
        ".spec.replicas",
        '.spec.template.spec.containers[name="nginx"].image',
    ]


def test_fields_no_longer_applied_are_removed():
    a = ssa(None, deploy(replicas=2, labels={"x": "1", "y": "2"}, env=[{"name": "A", "value": "1"}]), now=T0)
    b = ssa(a, deploy(labels={"x": "1"}), now=T1)
    assert "replicas" not in b["spec"]
    assert b["metadata"]["labels"] == {"x": "1"}
    assert "env" not in b["spec"]["template"]["spec"]["containers"][0]
    assert fields_of(b, "kubectl")["time"] == T1


def test_fields_owned_by_others_are_kept():
    a = ssa(None, deploy(labels={"x": "1"}), manager="one", now=T0)
    b = ssa(a, deploy(labels={"x": "1"}), manager="two", now=T1)
    c = ssa(b, deploy(), manager="one", now=T2)
    assert c["metadata"]["labels"] == {"x": "1"}  # "two" still applies it


def test_removing_a_container_item():
    two = deploy()
    two["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "busybox"})
    a = ssa(None, two, now=T0)
    b = ssa(a, deploy(), now=T1)
    assert [c["name"] for c in b["spec"]["template"]["spec"]["containers"]] == ["nginx"]


def test_live_fields_of_others_survive_apply_and_list_order():
    live = deploy(replicas=1)
    live["spec"]["template"]["spec"]["containers"].insert(0, {"name": "side", "image": "busybox"})
    live = update_managed_fields(
        None, live, manager="creator", operation="Update", api_version="apps/v1", now=T0, **GVK
    )
    cfg = deploy(image="nginx")
    out = ssa(live, cfg)
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["side", "nginx"]
    assert out["spec"]["replicas"] == 1


def test_before_first_apply_owns_existing_fields():
    live = deploy(replicas=1)
    live["metadata"]["uid"] = "u"
    with pytest.raises(ApiError) as e:
        ssa(live, deploy(replicas=5))
    assert e.value.message.endswith('conflict with "before-first-apply" using apps/v1: .spec.replicas')


def test_noop_apply_keeps_time():
    a = ssa(None, deploy(replicas=1), now=T0)
    b = ssa(a, deploy(replicas=1), now=T1)
    assert fields_of(b, "kubectl")["time"] == T0
    assert {k: v for k, v in b.items() if k != "metadata"} == {k: v for k, v in a.items() if k != "metadata"}


def test_config_with_managed_fields_is_rejected():
    cfg = deploy()
    cfg["metadata"]["managedFields"] = [{"manager": "x"}]
    with pytest.raises(ApiError) as e:
        ssa(None, cfg)
    assert (e.value.code, e.value.message) == (400, "metadata.managedFields must be nil")


def test_list_item_without_key_is_rejected():
    cfg = deploy()
    del cfg["spec"]["template"]["spec"]["containers"][0]["name"]
    with pytest.raises(ApiError) as e:
        ssa(None, cfg)
    assert e.value.code == 500
    assert e.value.message == (
        "failed to create typed patch object (apps/v1, Kind=Deployment): .spec.template.spec.containers: "
        'element 0: associative list with keys has an element that omits key field "name" '
        "(and doesn't have default value)"
    )


def test_unknown_kind_is_deduced():
    cr = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 1, "tags": ["a"]},
    }
    out = server_side_apply(
        None, cr, manager="m", force=False, group="example.com", version="v1", kind="Widget", now=T0
    )
    assert out["metadata"]["managedFields"][0]["fieldsV1"] == {
        "f:spec": {".": {}, "f:size": {}, "f:tags": {}}
    }
    out2 = server_side_apply(
        out,
        {**cr, "spec": {"tags": ["b"]}},
        manager="m",
        force=False,
        group="example.com",
        version="v1",
        kind="Widget",
        now=T1,
    )
    assert out2["spec"] == {"tags": ["b"]}


def test_status_in_config_is_not_owned():
    cfg = copy.deepcopy(deploy())
    cfg["status"] = {"replicas": 1}
    out = ssa(None, cfg)
    assert "f:status" not in fields_of(out, "kubectl")["fieldsV1"]
