"""Tables: users, API tokens, jobs, job events, deliveries and their signatures, notifications, heartbeats."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Optional

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in Python on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        # PostgreSQL answers in its session's TimeZone, which need not be UTC.
        return value.astimezone(timezone.utc)


# Plain JSON, not JSONB: kept as sent, and PostgreSQL's JSONB refuses \u0000 in strings.
JSONType = JSON()
BigId = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrements INTEGER only

created = Annotated[datetime, mapped_column(UTCDateTime, default=utcnow, nullable=False)]
timestamp = Annotated[Optional[datetime], mapped_column(UTCDateTime, nullable=True)]


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONType, Any: JSONType}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(255), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    email: Mapped[Optional[str]] = mapped_column(String(320))
    name: Mapped[Optional[str]] = mapped_column(String(255))
    created_at: Mapped[created]


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the token: the token itself is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[created]
    revoked_at: Mapped[timestamp]

    user: Mapped[User] = relationship(lazy="joined")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key", name="uq_jobs_user_idempotency_key"),
        Index("ix_jobs_created", "created_at", "id"),
        Index("ix_jobs_user_created", "user_id", "created_at", "id"),
        Index("ix_jobs_status_next_attempt", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    job_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    phase: Mapped[Optional[str]] = mapped_column(String(64))
    progress: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[Optional[Any]] = mapped_column(JSONType, nullable=True)
    error: Mapped[Optional[Any]] = mapped_column(JSONType, nullable=True)
    # Who failed it: "sender", or our own side ("dispatch", "watchdog"), which a later
    # `succeeded` from the sender may overrule (CONTRACT §4).
    failed_by: Mapped[Optional[str]] = mapped_column(String(16))
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id"), nullable=True)
    external_id: Mapped[Optional[str]] = mapped_column(String(255), index=True)
    source: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[timestamp]
    dispatch_url: Mapped[Optional[str]] = mapped_column(Text)
    idempotency_key: Mapped[Optional[str]] = mapped_column(String(255))
    request_hash: Mapped[Optional[str]] = mapped_column(String(64))
    # Bumped on every visible change; the ETag of GET /api/jobs/<id>.
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[created]
    updated_at: Mapped[created]
    completed_at: Mapped[timestamp]

    user: Mapped[Optional[User]] = relationship(lazy="joined")


class JobEvent(Base):
    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "dispatch" or "callback"
    status: Mapped[Optional[str]] = mapped_column(String(64))
    progress: Mapped[Optional[int]] = mapped_column(Integer)
    message: Mapped[Optional[str]] = mapped_column(Text)
    data: Mapped[Optional[Any]] = mapped_column(JSONType, nullable=True)
    # A delivery yields at most one event: the database, not the task, makes it once.
    delivery_pk: Mapped[Optional[int]] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL"), unique=True
    )
    created_at: Mapped[created]


class Delivery(Base):
    """An inbound request that was accepted: recorded before it is enqueued."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint", "delivery_id", name="uq_deliveries_endpoint_delivery_id"),
        Index("ix_deliveries_unapplied", "applied_at", "last_enqueued_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    endpoint: Mapped[str] = mapped_column(String(64))
    delivery_id: Mapped[str] = mapped_column(String(255))
    job_id: Mapped[str] = mapped_column(String(255), index=True)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    received_at: Mapped[created]
    last_enqueued_at: Mapped[created]
    applied_at: Mapped[timestamp]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[Optional[str]] = mapped_column(Text)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    # The canonical status the sender reported, and how long applying it took: /metrics.
    status: Mapped[Optional[str]] = mapped_column(String(16))
    apply_ms: Mapped[Optional[int]] = mapped_column(Integer)


class DeliverySignature(Base):
    """A verified HMAC (X-Signature scheme) and the delivery its request names.

    X-Delivery-Id and Idempotency-Key are not signed: a signed request replayed under other
    id headers is known by its signature. Every signature verified is kept, the original's
    and each of a sender's retries', for as long as its timestamp could still pass the
    check (shared.sweeps.forget_signatures).
    """

    __tablename__ = "delivery_signatures"

    endpoint: Mapped[str] = mapped_column(String(64), primary_key=True)
    signature: Mapped[str] = mapped_column(String(64), primary_key=True)  # 64 lowercase hex digits
    delivery_id: Mapped[str] = mapped_column(String(255))
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class JobImage(Base):
    """A generated image, stored once per job and position."""

    __tablename__ = "job_images"
    __table_args__ = (UniqueConstraint("job_id", "position", name="uq_job_images_job_position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    url: Mapped[Optional[str]] = mapped_column(Text)
    file_path: Mapped[Optional[str]] = mapped_column(Text)
    description: Mapped[Optional[str]] = mapped_column(Text)
    format: Mapped[Optional[str]] = mapped_column(String(32))
    size_bytes: Mapped[Optional[int]] = mapped_column(BigInteger)
    width: Mapped[Optional[int]] = mapped_column(Integer)
    height: Mapped[Optional[int]] = mapped_column(Integer)
    model: Mapped[Optional[str]] = mapped_column(String(255))
    generation_seconds: Mapped[Optional[float]]
    created_at: Mapped[created]


class Book(Base):
    """A generated book, stored once per job."""

    __tablename__ = "books"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    title: Mapped[str] = mapped_column(Text)
    topic: Mapped[Optional[str]] = mapped_column(Text)
    goal: Mapped[Optional[str]] = mapped_column(Text)
    outline: Mapped[Optional[Any]] = mapped_column(JSONType, nullable=True)
    word_count: Mapped[Optional[int]] = mapped_column(Integer)
    chapter_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[created]

    chapters: Mapped[list["BookChapter"]] = relationship(order_by="BookChapter.position", lazy="selectin")


class BookChapter(Base):
    __tablename__ = "book_chapters"
    __table_args__ = (UniqueConstraint("book_id", "position", name="uq_book_chapters_book_position"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    book_id: Mapped[int] = mapped_column(ForeignKey("books.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    title: Mapped[Optional[str]] = mapped_column(Text)
    description: Mapped[Optional[str]] = mapped_column(Text)
    content: Mapped[Optional[str]] = mapped_column(Text)


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_user_created", "user_id", "created_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Null while the job is unassigned: the assignment hands it to the new owner.
    user_id: Mapped[Optional[int]] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)
    job_id: Mapped[Optional[str]] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[created]
    read_at: Mapped[timestamp]


class Heartbeat(Base):
    """When a process last showed it is alive (beat's tick, the worker canary, the web's start):
    /readyz, doctor and /metrics read them."""

    __tablename__ = "heartbeats"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    beat_at: Mapped[created]
    # What the process reported with its beat (the web: the base URL it serves).
    detail: Mapped[Optional[str]] = mapped_column(Text)
