"""The scheduler's view of the cluster: every NodeInfo, the assigned pods, and lookup indexes.

Updated incrementally by the informer handlers and the assume cache (the scheduler runs on one
event loop, so a scheduling cycle always sees a consistent state without copying). Indexes:

- pods by label pair and by label key, to find the pods a selector may match;
- required anti-affinity terms of existing pods, grouped by identical term and indexed by the
  label pairs their selector requires, to find the terms an incoming pod may violate;
- how many nodes hold each image (ImageLocality's spread factor).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from peapod.controlplane.scheduler.model import AffinityTerm, NodeInfo, PodInfo
from peapod.controlplane.scheduler.selectors import LabelMatcher

Obj = dict[str, Any]


class _AntiTermGroup:
    __slots__ = ("members", "term")

    def __init__(self, term: AffinityTerm) -> None:
        self.term = term
        self.members: set[str] = set()


def _term_signature(t: AffinityTerm) -> tuple[Any, ...]:
    nss = t.namespace_selector
    return (t.selector, t.topology_key, t.namespaces, nss)


class Snapshot:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self._node_list: list[NodeInfo] | None = None
        self.pods: dict[str, PodInfo] = {}  # assigned or assumed pods by key
        self.namespace_labels: dict[str, dict[str, str]] = {}
        self.image_nodes: dict[str, int] = {}
        self._by_pair: dict[tuple[str, str], set[str]] = {}
        self._by_key: dict[str, set[str]] = {}
        self._anti_groups: dict[tuple[Any, ...], _AntiTermGroup] = {}
        self._anti_by_pair: dict[tuple[str, str], set[tuple[Any, ...]]] = {}
        self._anti_by_key: dict[str, set[tuple[Any, ...]]] = {}
        self._anti_unindexed: set[tuple[Any, ...]] = set()
        self.scoring_affinity_pods: dict[str, PodInfo] = {}
        self.prefer_taint_nodes = 0

    # -- nodes --------------------------------------------------------------------------------
    def node_list(self) -> list[NodeInfo]:
        """Nodes that exist (a NodeInfo may linger for pods of a deleted node), in a stable order."""
        if self._node_list is None:
            self._node_list = [n for n in self.nodes.values() if n.node is not None]
        return self._node_list

    def num_nodes(self) -> int:
        return len(self.node_list())

    def set_node(self, node: Obj) -> NodeInfo:
        name = node["metadata"]["name"]
        ni = self.nodes.get(name)
        if ni is None:
            ni = self.nodes[name] = NodeInfo(name)
            self._node_list = None
        elif ni.node is None:
            self._node_list = None
        else:
            self._count_node(ni, -1)
        ni.set_node(node)
        self._count_node(ni, 1)
        return ni

    def remove_node(self, name: str) -> None:
        ni = self.nodes.get(name)
        if ni is None or ni.node is None:
            return
        self._count_node(ni, -1)
        ni.node = None
        self._node_list = None
        if not ni.pods:
            del self.nodes[name]

    def _count_node(self, ni: NodeInfo, sign: int) -> None:
        for img in ni.images:
            n = self.image_nodes.get(img, 0) + sign
            if n > 0:
                self.image_nodes[img] = n
            else:
                self.image_nodes.pop(img, None)
        if ni.prefer_taints:
            self.prefer_taint_nodes += sign

    # -- pods ---------------------------------------------------------------------------------
    def add_pod(self, p: PodInfo) -> None:
        """Account a pod on ``p.node_name`` (replacing an older version of the same pod)."""
        if p.key in self.pods:
            self.remove_pod(p.key)
        ni = self.nodes.get(p.node_name)
        if ni is None:
            ni = self.nodes[p.node_name] = NodeInfo(p.node_name)
        ni.add_pod(p)
        self.pods[p.key] = p
        for kv in p.labels.items():
            self._by_pair.setdefault(kv, set()).add(p.key)
            self._by_key.setdefault(kv[0], set()).add(p.key)
        for t in p.required_anti_affinity:
            self._add_anti_term(p.key, t)
        if p.has_scoring_affinity:
            self.scoring_affinity_pods[p.key] = p

    def remove_pod(self, key: str) -> PodInfo | None:
        p = self.pods.pop(key, None)
        if p is None:
            return None
        ni = self.nodes.get(p.node_name)
        if ni is not None:
            ni.remove_pod(key)
            if ni.node is None and not ni.pods:
                del self.nodes[p.node_name]
        for kv in p.labels.items():
            s = self._by_pair.get(kv)
            if s is not None:
                s.discard(key)
                if not s:
                    del self._by_pair[kv]
            s = self._by_key.get(kv[0])
            if s is not None:
                s.discard(key)
                if not s:
                    del self._by_key[kv[0]]
        for t in p.required_anti_affinity:
            self._remove_anti_term(key, t)
        self.scoring_affinity_pods.pop(key, None)
        return p

    def candidates(self, selector: LabelMatcher) -> Iterable[str]:
        """Keys of pods that may match ``selector`` (a superset; callers still match)."""
        if selector.nothing:
            return ()
        best: set[str] | None = None
        for key, values in selector.index_keys():
            if values is None:
                s = self._by_key.get(key, set())
            elif len(values) == 1:
                s = self._by_pair.get((key, next(iter(values))), set())
            else:
                s = set()
                for v in values:
                    s |= self._by_pair.get((key, v), set())
            if best is None or len(s) < len(best):
                best = s
            if not best:
                return ()
        return self.pods.keys() if best is None else best

    def matching_pods(self, term: AffinityTerm, ns_labels_of: Any = None) -> Iterator[PodInfo]:
        """Existing pods that ``term`` (of an incoming pod) selects."""
        nsl = self.namespace_labels
        for key in list(self.candidates(term.selector)):
            p = self.pods[key]
            if term.matches(p, nsl.get(p.namespace)):
                yield p

    # -- existing pods' required anti-affinity ----------------------------------------------
    def _add_anti_term(self, pod_key: str, t: AffinityTerm) -> None:
        sig = _term_signature(t)
        g = self._anti_groups.get(sig)
        if g is None:
            g = self._anti_groups[sig] = _AntiTermGroup(t)
            idx = t.selector.index_keys()
            if t.selector.nothing:
                pass
            elif not idx:
                self._anti_unindexed.add(sig)
            else:
                key, values = idx[0]
                if values is None:
                    self._anti_by_key.setdefault(key, set()).add(sig)
                else:
                    for v in values:
                        self._anti_by_pair.setdefault((key, v), set()).add(sig)
        g.members.add(pod_key)

    def _remove_anti_term(self, pod_key: str, t: AffinityTerm) -> None:
        sig = _term_signature(t)
        g = self._anti_groups.get(sig)
        if g is None:
            return
        g.members.discard(pod_key)
        if g.members:
            return
        del self._anti_groups[sig]
        self._anti_unindexed.discard(sig)
        for index in (self._anti_by_key, self._anti_by_pair):
            for k in [k for k, s in index.items() if sig in s]:
                index[k].discard(sig)  # type: ignore[index]
                if not index[k]:  # type: ignore[index]
                    del index[k]  # type: ignore[arg-type]

    def anti_affinity_against(self, p: PodInfo) -> list[tuple[AffinityTerm, set[str]]]:
        """(term, member pod keys) of existing pods' required anti-affinity terms matching ``p``."""
        if not self._anti_groups:
            return []
        sigs = set(self._anti_unindexed)
        for kv in p.labels.items():
            s = self._anti_by_pair.get(kv)
            if s:
                sigs |= s
            s = self._anti_by_key.get(kv[0])
            if s:
                sigs |= s
        ns_labels = self.namespace_labels.get(p.namespace)
        out = []
        for sig in sigs:
            g = self._anti_groups[sig]
            if g.term.matches(p, ns_labels):
                out.append((g.term, g.members))
        return out
