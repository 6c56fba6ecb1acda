"""Bearer-token authentication for the app-facing API."""

from __future__ import annotations

from functools import wraps

from flask import current_app, g, request

from ingress.db import session
from ingress.errors import ApiError
from ingress.limits import enforce
from shared.jobs import hash_token, user_for_token


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Bearer realm="api"'})


def require_user(view):
    """Resolve `Authorization: Bearer <token>` to g.user, or answer 401."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("send Authorization: Bearer <token> (flask --app ingress create-token)")
        user = user_for_token(session(), token.strip())
        if user is None:
            raise _unauthorized("the token is not valid")
        enforce("token", hash_token(token.strip())[:32], current_app.extensions["settings"].rate_limit_token)
        g.user = user
        return view(*args, **kwargs)

    return wrapper
