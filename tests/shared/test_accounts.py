"""shared.accounts: users known by the application's own id, and their API tokens, kept
only as hashes."""

import uuid
from datetime import datetime, timezone

from sqlalchemy import func, select

from shared.accounts import TOKEN_PREFIX, create_token, get_or_create_user, hash_token, user_for_token
from shared.models import ApiToken, User


def external_id() -> str:
    return f"account-{uuid.uuid4().hex[:8]}"


def test_a_user_is_made_once_per_application_id(session):
    name = external_id()
    first = get_or_create_user(session, name)
    assert get_or_create_user(session, name) is first
    assert session.scalar(select(func.count()).select_from(User).where(User.external_id == name)) == 1
    assert not first.is_admin


def test_a_token_finds_its_user_and_only_its_hash_is_kept(session):
    name = external_id()
    token = create_token(session, name, admin=True, email="ada@example.com", name="Ada")
    user = user_for_token(session, hash_token(token))
    assert token.startswith(TOKEN_PREFIX)
    assert (user.external_id, user.is_admin, user.email, user.name) == (name, True, "ada@example.com", "Ada")
    stored = session.scalar(select(ApiToken).where(ApiToken.user_id == user.id))
    assert stored.token_hash == hash_token(token) != token and stored.prefix == token[:10]


def test_a_users_tokens_each_work_and_a_second_keeps_what_the_first_set(session):
    name = external_id()
    first = create_token(session, name, admin=True)
    second = create_token(session, name)  # no --admin: the user stays an admin
    assert first != second
    assert user_for_token(session, hash_token(first)) is user_for_token(session, hash_token(second))
    assert user_for_token(session, hash_token(second)).is_admin


def test_a_revoked_or_unknown_token_finds_no_one(session):
    token = create_token(session, external_id())
    session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).revoked_at = (
        datetime.now(timezone.utc))
    session.flush()
    assert user_for_token(session, hash_token(token)) is None
    assert user_for_token(session, hash_token(TOKEN_PREFIX + "never-issued")) is None
