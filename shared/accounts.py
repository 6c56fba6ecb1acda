"""Users (known by the application's own id) and their API tokens."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.models import ApiToken, User

TOKEN_PREFIX = "abt_"


def get_or_create_user(session: Session, external_id: str) -> User:
    """The user with the application's own id `external_id`, created if unknown."""
    user = session.scalar(select(User).where(User.external_id == external_id))
    if user is not None:
        return user
    try:
        with session.begin_nested():
            user = User(external_id=external_id)
            session.add(user)
    except IntegrityError:  # created concurrently by another request or worker
        user = session.scalar(select(User).where(User.external_id == external_id))
    return user


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, external_id: str, admin: bool = False, email=None, name=None) -> str:
    """Create the user if missing and a new API token for it; the token is returned once."""
    user = get_or_create_user(session, external_id)
    if admin:
        user.is_admin = True
    if email:
        user.email = email
    if name:
        user.name = name
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:10]))
    return token


def user_for_token(session: Session, token_hash: str) -> User | None:
    # Looked up by its SHA-256 (hash_token): no comparison of secrets happens in Python.
    return session.scalar(
        select(User)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == token_hash, ApiToken.revoked_at.is_(None))
    )
