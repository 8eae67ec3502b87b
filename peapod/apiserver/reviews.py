"""SelfSubjectAccessReview and SelfSubjectRulesReview, answered by the same authorizer as requests.

``kubectl auth can-i VERB RESOURCE`` posts a SelfSubjectAccessReview; ``kubectl auth can-i --list``
a SelfSubjectRulesReview. Without an authorizer installed (in-process tests without auth) every
review is allowed.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from peapod.api import errors
from peapod.api.resources import ResourceInfo
from peapod.apiserver.authz import AUTHORIZER, Attributes
from peapod.apiserver.context import ApiContext
from peapod.apiserver.handlers.common import reply, write_options
from peapod.apiserver.handlers.write import decode_checked
from peapod.apiserver.negotiation import Output


def _result(review: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = copy.deepcopy(review)
    meta = result.get("metadata") if isinstance(result.get("metadata"), dict) else {}
    result["metadata"] = {**meta, "creationTimestamp": None}
    return result


def _attributes(spec: dict[str, Any]) -> Attributes:
    ra = spec.get("resourceAttributes")
    if isinstance(ra, dict) and ra:
        return Attributes(
            verb=str(ra.get("verb") or ""),
            group=str(ra.get("group") or ""),
            resource=str(ra.get("resource") or ""),
            subresource=str(ra.get("subresource") or "") or None,
            namespace=str(ra.get("namespace") or "") or None,
            name=str(ra.get("name") or "") or None,
        )
    nra = spec.get("nonResourceAttributes") or {}
    return Attributes(verb=str(nra.get("verb") or ""), path=str(nra.get("path") or ""))


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
    if spec.get("resourceAttributes") and spec.get("nonResourceAttributes"):
        raise errors.invalid_object(
            info.group,
            info.kind,
            "",
            [
                errors.invalid(
                    "spec.nonResourceAttributes",
                    spec["nonResourceAttributes"],
                    "cannot be specified in combination with resourceAttributes",
                )
            ],
        )
    result = _result(review)
    authorizer = request.app.get(AUTHORIZER)
    user = request.get("user")
    if authorizer is None or user is None:
        result["status"] = {"allowed": True, "reason": "peapod: authorization is not configured"}
    else:
        decision = await authorizer.authorize(user, _attributes(spec))
        status: dict[str, Any] = {"allowed": decision.allowed}
        if decision.reason:
            status["reason"] = decision.reason
        result["status"] = status
    return reply(result, out, 201, opts.warnings)


async def handle_self_subject_rules_review(
    ctx: ApiContext, request: web.Request, info: ResourceInfo, out: Output
) -> web.Response:
    opts = write_options(request)
    review = await decode_checked(request, info, opts)
    spec = review.get("spec") if isinstance(review.get("spec"), dict) else {}
    namespace = spec.get("namespace") if isinstance(spec.get("namespace"), str) else ""
    result = _result(review)
    authorizer = request.app.get(AUTHORIZER)
    user = request.get("user")
    if authorizer is None or user is None:
        result["status"] = {
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": False,
        }
    else:
        res, non, incomplete = authorizer.rules_for(user, namespace)
        result["status"] = {"resourceRules": res, "nonResourceRules": non, "incomplete": incomplete}
    return reply(result, out, 201, opts.warnings)
