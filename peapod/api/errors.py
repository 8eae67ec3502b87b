"""API errors as Kubernetes ``Status`` objects.

Every layer raises :class:`ApiError`; the API server turns it into the HTTP status and the
``metav1.Status`` body that kubectl and client-go know how to print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Cause types (metav1.CauseType) used in field errors.
FIELD_REQUIRED = "FieldValueRequired"
FIELD_INVALID = "FieldValueInvalid"
FIELD_NOT_SUPPORTED = "FieldValueNotSupported"
FIELD_FORBIDDEN = "FieldValueForbidden"
FIELD_DUPLICATE = "FieldValueDuplicate"
FIELD_TOO_LONG = "FieldValueTooLong"
FIELD_TOO_MANY = "FieldValueTooMany"
FIELD_UNKNOWN = "FieldValueUnknown"  # unknown field under fieldValidation=Strict

# How each cause type reads in a message ("spec.containers[0].image: Required value").
_CAUSE_TEXT = {
    FIELD_REQUIRED: "Required value",
    FIELD_INVALID: "Invalid value",
    FIELD_NOT_SUPPORTED: "Unsupported value",
    FIELD_FORBIDDEN: "Forbidden",
    FIELD_DUPLICATE: "Duplicate value",
    FIELD_TOO_LONG: "Too long",
    FIELD_TOO_MANY: "Too many",
    FIELD_UNKNOWN: "unknown field",
}


@dataclass
class FieldError:
    """One problem with one field, like k8s.io/apimachinery's ``field.Error``."""

    type: str
    field: str
    detail: str = ""
    bad_value: Any = None
    has_value: bool = False

    def message(self) -> str:
        text = _CAUSE_TEXT.get(self.type, self.type)
        if self.type == FIELD_UNKNOWN:
            return f'unknown field "{self.field}"'
        if self.type == FIELD_REQUIRED or self.type == FIELD_FORBIDDEN or not self.has_value:
            out = f"{self.field}: {text}"
        else:
            out = f"{self.field}: {text}: {_render(self.bad_value)}"
        if self.detail:
            out += f": {self.detail}"
        return out

    def cause(self) -> dict[str, Any]:
        if self.type == FIELD_UNKNOWN:
            return {"reason": FIELD_UNKNOWN, "message": self.message(), "field": self.field}
        text = _CAUSE_TEXT.get(self.type, self.type)
        msg = text
        if self.type != FIELD_REQUIRED and self.has_value:
            msg = f"{text}: {_render(self.bad_value)}"
        if self.detail:
            msg += f": {self.detail}"
        return {"reason": self.type, "message": msg, "field": self.field}


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(FIELD_REQUIRED, path, detail)


def invalid(path: str, value: Any, detail: str = "") -> FieldError:
    return FieldError(FIELD_INVALID, path, detail, value, True)


def not_supported(path: str, value: Any, valid: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(f'"{v}"' for v in valid)
    return FieldError(FIELD_NOT_SUPPORTED, path, detail, value, True)


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(FIELD_FORBIDDEN, path, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError(FIELD_DUPLICATE, path, "", value, True)


def too_long(path: str, value: Any, limit: int) -> FieldError:
    return FieldError(FIELD_TOO_LONG, path, f"must have at most {limit} bytes", value, False)


def _render(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return str(value)


@dataclass
class ApiError(Exception):
    """An error that reaches the client as a metav1.Status."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(group: str, kind: str, name: str | None) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": kind}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    return d


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(group: str, resource: str, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{_qualified(group, resource)} "{name}" not found', _details(group, resource, name)
    )


def already_exists(group: str, resource: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(group, resource)} "{name}" already exists',
        _details(group, resource, name),
    )


def conflict(group: str, resource: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(group, resource)} "{name}": {why}',
        _details(group, resource, name),
    )


def stale_conflict(group: str, resource: str, name: str) -> ApiError:
    return conflict(
        group,
        resource,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )


def invalid_object(group: str, kind: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid; kubectl prints `The Pod "x" is invalid: spec.containers[0].image: Required value`."""
    msgs = [e.message() for e in errors]
    if len(msgs) == 1:
        summary = msgs[0]
    else:
        summary = "[" + ", ".join(msgs) + "]"
    gk = f"{kind}.{group}" if group else kind
    details = _details(group, kind, name)
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, "Invalid", f'{gk} "{name}" is invalid: {summary}', details)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden_request(user: str, verb: str, group: str, resource: str, namespace: str | None) -> ApiError:
    where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
    return ApiError(
        403,
        "Forbidden",
        f'{_qualified(group, resource)} is forbidden: User "{user}" cannot {verb} resource "{resource}" '
        f'in API group "{group}"{where}',
        _details(group, resource, None),
    )


def unsupported_media_type(ctype: str) -> ApiError:
    return ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {ctype}")


def too_large(message: str = "the request entity is too large") -> ApiError:
    return ApiError(413, "RequestEntityTooLarge", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")
