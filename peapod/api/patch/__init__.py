"""What kube-apiserver does for PATCH: JSON patch, merge patch, strategic merge patch and
server-side apply, plus managedFields bookkeeping for every write. Pure functions over JSON dicts.
"""

from peapod.api.patch.apply import server_side_apply
from peapod.api.patch.json_patch import apply_json_patch
from peapod.api.patch.managedfields import update_managed_fields
from peapod.api.patch.merge_patch import apply_merge_patch, create_merge_patch
from peapod.api.patch.strategic import apply_strategic_merge_patch

__all__ = [
    "apply_json_patch",
    "apply_merge_patch",
    "apply_strategic_merge_patch",
    "create_merge_patch",
    "server_side_apply",
    "update_managed_fields",
]
