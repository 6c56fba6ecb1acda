"""Bearer-token authentication for the app-facing API."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import wraps

from flask import current_app, g, request
from sqlalchemy.orm import make_transient_to_detached

from ingress.db import session
from ingress.errors import ApiError
from ingress.limits import enforce
from shared.accounts import hash_token, user_for_token
from shared.models import User

# A frontend polls every second or faster: each web process remembers a token's user for
# this long instead of asking the database each time (a revoked token or a changed role
# takes effect within it).
TOKEN_CACHE_SECONDS = 5.0
TOKEN_CACHE_SIZE = 10_000


class TokenCache:
    def __init__(self, seconds: float = TOKEN_CACHE_SECONDS, size: int = TOKEN_CACHE_SIZE,
                 clock: Callable[[], float] = time.monotonic):
        self.seconds, self.size, self.clock = seconds, size, clock
        self._lock = threading.Lock()
        self._users: dict[str, tuple[float, User]] = {}

    def user(self, token_hash: str) -> User | None:
        """The request session's copy of the token's user, or None when it is not valid."""
        db = session()
        now = self.clock()
        with self._lock:
            cached = self._users.get(token_hash)
        if cached is not None and now - cached[0] < self.seconds:
            # A copy in this request's session, from the remembered state: no query.
            return db.merge(cached[1], load=False)
        user = user_for_token(db, token_hash)
        if user is None:
            return None
        snapshot = User(**{column.key: getattr(user, column.key) for column in User.__table__.columns})
        make_transient_to_detached(snapshot)  # as if loaded by a session since closed
        with self._lock:
            if len(self._users) >= self.size:
                self._users.clear()
            self._users[token_hash] = (now, snapshot)
        return user


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
        token_hash = hash_token(token.strip())
        user = current_app.extensions["token_cache"].user(token_hash)
        if user is None:
            raise _unauthorized("the token is not valid")
        enforce("token", token_hash[:32], current_app.extensions["settings"].rate_limit_token)
        g.user = user
        return view(*args, **kwargs)

    return wrapper
