"""FC's error answers: a missing or existing resource, a bad argument."""

from __future__ import annotations

from ..errors import ApiError


def not_found(what: str) -> ApiError:
    return ApiError(f"{what}NotFound", f"{what} not found", 404)


def exists(what: str) -> ApiError:
    return ApiError(f"{what}AlreadyExists", f"{what} already exists", 409)


def bad(message: str) -> ApiError:
    return ApiError("InvalidArgument", message, 400)
