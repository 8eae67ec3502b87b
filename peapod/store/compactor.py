"""Periodic compaction in the style of kube-apiserver's etcd compactor.

Every ``interval`` the compactor notes the store's current revision and compacts at the revision it
noted one interval earlier, so a watcher always has at least a full interval to catch up before the
history it is reading goes away. It never compacts the newest ``keep_revisions`` revisions, so a burst of
writes cannot outrun a slow client within one interval. The first compaction happens after two
intervals (kube-apiserver does not compact on bootstrap either).

Several compactors on one store (several API servers on one etcd) are harmless: compacting at a
revision that is already compacted is skipped.
"""

from __future__ import annotations

import logging

from peapod.clock import Clock
from peapod.store.base import CompactedError, Store

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 300.0
DEFAULT_KEEP_REVISIONS = 1000


def compaction_target(previous: int, current: int, compacted: int, keep_revisions: int) -> int:
    """The revision to compact at now, or 0 for nothing to do.

    ``previous``: the revision seen one interval ago; ``current``: now; ``compacted``: already done.
    """
    target = min(previous, current - keep_revisions)
    return target if target > compacted else 0


async def run_compactor(
    store: Store,
    *,
    clock: Clock,
    interval: float = DEFAULT_INTERVAL,
    keep_revisions: int = DEFAULT_KEEP_REVISIONS,
) -> None:
    """Compact ``store`` forever (until cancelled). Errors are logged and retried next interval."""
    if interval <= 0:
        raise ValueError("interval must be positive")
    if keep_revisions < 0:
        raise ValueError("keep_revisions must not be negative")
    previous = 0
    while True:
        await clock.sleep(interval)
        try:
            current = await store.current_revision()
            compacted = await store.compacted_revision()
        except Exception:
            log.warning("store compaction: cannot read revisions; retrying in %.0fs", interval, exc_info=True)
            continue
        target = compaction_target(previous, current, compacted, keep_revisions)
        # Like kube-apiserver, the next round aims at the revision seen now even if this round fails.
        previous = current
        if not target:
            continue
        try:
            await store.compact(target)
        except CompactedError:
            pass  # another compactor went further already
        except Exception:
            log.warning("store compaction at %d failed; retrying in %.0fs", target, interval, exc_info=True)
        else:
            log.info("compacted store at revision %d (current %d)", target, current)
