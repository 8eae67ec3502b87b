"""managedFields for create/update/patch ("Update" operations)."""

import copy

from peapod.api.patch import update_managed_fields
from peapod.api.patch.managedfields import decode

T0, T1 = "2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"


def upd(old, new, manager, now=T1, **kw):
    return update_managed_fields(
        old,
        new,
        manager=manager,
        operation="Update",
        api_version="v1",
        now=now,
        group="",
        version="v1",
        kind="ConfigMap",
        **kw,
    )


def entries(obj):
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields", [])}


CM = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {
        "name": "c",
        "namespace": "default",
        "uid": "u",
        "resourceVersion": "1",
        "labels": {"a": "1"},
    },
    "data": {"k": "v"},
}


def test_create_owns_everything_but_system_fields():
    out = upd(None, CM, "kubectl-create", now=T0)
    assert out["metadata"]["managedFields"] == [
        {
            "manager": "kubectl-create",
            "operation": "Update",
            "apiVersion": "v1",
            "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:a": {}}}},
        }
    ]
    assert out["data"] == CM["data"]


def test_update_moves_changed_fields_and_drops_removed():
    created = upd(None, CM, "creator", now=T0)
    new = copy.deepcopy(created)
    new["data"] = {"k": "v2", "n": "x"}
    new["metadata"]["labels"] = {}
    out = upd(created, new, "editor")
    e = entries(out)
    assert e[("editor", "Update")]["fieldsV1"] == {"f:data": {"f:k": {}, "f:n": {}}}
    assert e[("editor", "Update")]["time"] == T1
    # creator lost data.k (changed) and the label (removed) but keeps the maps themselves
    assert e[("creator", "Update")]["fieldsV1"] == {"f:data": {}, "f:metadata": {"f:labels": {}}}
    assert e[("creator", "Update")]["time"] == T0


def test_no_change_keeps_entries_and_time():
    created = upd(None, CM, "creator", now=T0)
    out = upd(created, copy.deepcopy(created), "other")
    assert out["metadata"]["managedFields"] == created["metadata"]["managedFields"]


def test_same_manager_accumulates():
    created = upd(None, CM, "m", now=T0)
    new = copy.deepcopy(created)
    new["data"]["z"] = "1"
    out = upd(created, new, "m")
    (e,) = out["metadata"]["managedFields"]
    assert e["time"] == T1
    assert set(e["fieldsV1"]["f:data"]) == {".", "f:k", "f:z"}


def test_request_can_reset_managed_fields():
    created = upd(None, CM, "m", now=T0)
    new = copy.deepcopy(created)
    new["metadata"]["managedFields"] = [{}]
    out = upd(created, new, "m2")
    assert "managedFields" not in out["metadata"]  # nothing changed, nothing owned


def test_status_is_not_tracked_and_status_subresource_tracks_only_status():
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Pending"},
    }
    out = update_managed_fields(
        None,
        pod,
        manager="m",
        operation="Update",
        api_version="v1",
        now=T0,
        group="",
        version="v1",
        kind="Pod",
    )
    fields = out["metadata"]["managedFields"][0]["fieldsV1"]
    assert "f:status" not in fields
    assert fields["f:spec"]["f:containers"] == {'k:{"name":"c"}': {".": {}, "f:image": {}, "f:name": {}}}
    new = copy.deepcopy(out)
    new["status"] = {"phase": "Running", "podIP": "10.0.0.2"}
    new["spec"]["containers"][0]["image"] = "changed-illegally"
    out2 = update_managed_fields(
        out,
        new,
        manager="kubelet",
        operation="Update",
        api_version="v1",
        now=T1,
        group="",
        version="v1",
        kind="Pod",
        subresource="status",
    )
    kubelet = next(e for e in out2["metadata"]["managedFields"] if e["manager"] == "kubelet")
    assert kubelet["subresource"] == "status"
    assert kubelet["fieldsV1"] == {"f:status": {"f:phase": {}, "f:podIP": {}}}
    assert len(decode(out2["metadata"]["managedFields"])) == 2


def test_entries_sorted_apply_first_then_time():
    created = upd(None, CM, "b", now=T1)
    new = copy.deepcopy(created)
    new["data"]["x"] = "1"
    out = upd(created, new, "a", now="2024-01-03T00:00:00Z")
    assert [e["manager"] for e in out["metadata"]["managedFields"]] == ["b", "a"]
