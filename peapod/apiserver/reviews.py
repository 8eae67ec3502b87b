"""Access reviews. Until RBAC exists every authenticated user is allowed everything."""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from peapod.api import errors
from peapod.api.resources import ResourceInfo
from peapod.apiserver.context import ApiContext
from peapod.apiserver.handlers.common import reply, write_options
from peapod.apiserver.handlers.write import decode_checked
from peapod.apiserver.negotiation import Output


async def handle_self_subject_access_review(
    ctx: ApiContext, request: web.Request, info: ResourceInfo, out: Output
) -> web.Response:
    opts = write_options(request)
    review = await decode_checked(request, info, opts)
    spec = review.get("spec")
    if not isinstance(spec, dict) or (
        not spec.get("resourceAttributes") and not spec.get("nonResourceAttributes")
    ):
        raise errors.invalid_object(
            info.group,
            info.kind,
            "",
            [
                errors.required(
                    "spec.resourceAttributes",
                    "exactly one of nonResourceAttributes or resourceAttributes must be specified",
                )
            ],
        )
    result: dict[str, Any] = copy.deepcopy(review)
    meta = result.get("metadata") if isinstance(result.get("metadata"), dict) else {}
    result["metadata"] = {**meta, "creationTimestamp": None}
    result["status"] = {
        "allowed": True,
        "reason": "peapod: RBAC is not enforced; every authenticated user is allowed",
    }
    return reply(result, out, 201, opts.warnings)
