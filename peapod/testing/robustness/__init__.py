"""A robustness suite in the style of etcd's: randomized traffic, injected faults, a history checker.

- :mod:`.history`: what clients and watchers observed (plain records, JSON-serializable).
- :mod:`.traffic` / :mod:`.watchers`: seeded concurrent clients and reconnecting watchers that record it.
- :mod:`.faults`: SIGKILLs (server, agent, conmon, container), etcd member loss, a full disk, a slow store,
  applied to a real ``peapod up`` or a split node (:mod:`peapod.testing.splitnode`).
- :mod:`.checker`: pure checks of a history (lost writes, resourceVersion order, missed watch events,
  convergence, orphan or phantom containers); each anomaly is one line of text.
- :mod:`.run`: one run end to end, with the report line (seed, operations, faults, anomalies).
"""
