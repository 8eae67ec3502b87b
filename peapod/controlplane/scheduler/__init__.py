"""peapod's kube-scheduler: pure filter/score plugins over a snapshot, a scheduling queue, and a loop
that binds pods through the API (pods/binding)."""

from peapod.controlplane.scheduler.core import FitError, NoNodesAvailable, Placement, SchedulerCore
from peapod.controlplane.scheduler.queue import SchedulingQueue
from peapod.controlplane.scheduler.scheduler import Outcome, Scheduler, run_scheduler
from peapod.controlplane.scheduler.snapshot import Snapshot

__all__ = [
    "FitError", "NoNodesAvailable", "Outcome", "Placement", "Scheduler", "SchedulerCore", "SchedulingQueue",
    "Snapshot", "run_scheduler",
]
