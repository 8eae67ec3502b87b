"""The Status errors kube-apiserver answers for patch failures."""

from __future__ import annotations

from peapod.api.errors import ApiError

_INVALID_GENERIC = "the server rejected our request due to an error in our request"


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unprocessable() -> ApiError:
    """422 as ``errors.NewGenericServerResponse(422, ...)`` builds it: the cause text is not sent."""
    return ApiError(422, "Invalid", _INVALID_GENERIC, {})


def unknown(message: str) -> ApiError:
    """A plain Go error reaching the handler: 500 with an empty (Unknown) reason."""
    return ApiError(500, "", message)
