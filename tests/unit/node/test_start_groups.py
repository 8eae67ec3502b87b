"""Which containers of a pod the executor starts side by side."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from peapod.node.plan import StartContainer
from peapod.node.sync import PodExecutor


class Images:
    def __init__(self, present: set[str]) -> None:
        self.present = present

    def get(self, ref: str) -> object | None:
        if ref.startswith("!"):
            raise ValueError("invalid reference")
        return object() if ref in self.present else None


def groups(pod: dict[str, Any], starts: list[StartContainer], present: set[str]) -> list[list[str]]:
    fake = SimpleNamespace(images=Images(present))
    return [[s.name for s in g] for g in PodExecutor._start_groups(fake, pod, starts)]  # type: ignore[arg-type]


def c(name: str, image: str = "img:1", **kw: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **kw}


HOOK = {"postStart": {"exec": {"command": ["true"]}}}


def test_app_containers_with_local_images_start_together() -> None:
    pod = {"spec": {"containers": [c("a"), c("b"), c("c")]}}
    starts = [StartContainer(n, "app", 0) for n in "abc"]
    assert groups(pod, starts, {"img:1"}) == [["a", "b", "c"]]


def test_init_and_sidecars_go_alone_in_order_and_a_post_start_hook_ends_a_group() -> None:
    pod = {"spec": {"initContainers": [c("i"), c("side", restartPolicy="Always")],
                    "containers": [c("a"), c("b", lifecycle=HOOK), c("c"), c("d")]}}
    starts = [StartContainer("i", "init", 0), StartContainer("side", "sidecar", 0),
              *(StartContainer(n, "app", 0) for n in "abcd")]
    assert groups(pod, starts, {"img:1"}) == [["i"], ["side"], ["a", "b"], ["c", "d"]]


def test_containers_that_may_pull_start_alone() -> None:
    pod = {"spec": {"containers": [c("a"), c("b", "other:1"), c("c"), c("d", imagePullPolicy="Always"),
                                   c("e", "!bad")]}}
    starts = [StartContainer(n, "app", 0) for n in "abcde"]
    assert groups(pod, starts, {"img:1"}) == [["a"], ["b"], ["c"], ["d"], ["e"]]
