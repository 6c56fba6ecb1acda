"""Deliveries: recorded by the ingress before anything else, applied once by a worker."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, and_, case, delete, func, null, or_, select, tuple_, union_all, update
from sqlalchemy.orm import Session

from shared import artifacts, lifecycle
from shared.callbacks import ENDPOINTS, Callback, Endpoint, PayloadError, load
from shared.db import INSERT, dialect, milliseconds_since
from shared.accounts import get_or_create_user
from shared.jobs import apply_change
from shared.models import Delivery, DeliverySignature, Job, JobEvent, utcnow

log = logging.getLogger(__name__)

DELIVERIES = Delivery.__table__
SIGNATURES = DeliverySignature.__table__
# At most this many deliveries per INSERT at the ingress, and per message and transaction
# in the workers.
BATCH = 50
# A delivery is known by its id (unique per endpoint). A request signed with the HMAC scheme
# is also known by its signature, since its id headers are not signed: every signature
# verified, the original's and each of a sender's retries' (signed again with a new
# timestamp), is kept in delivery_signatures with the id of the delivery its request names,
# until no replay could pass the timestamp check (shared.sweeps.forget_signatures). An item
# is inserted only if it is unsigned or its signature was claimed by this statement; the
# others are found afterwards, by the delivery their signature names or by their id, and
# counted as duplicates. The primary keys decide between two web processes recording the
# same delivery at once: the second waits for the first's commit.
# PostgreSQL: one statement, so a signature is never claimed without its delivery and, on
# an autocommit connection, a batch without repeats is one round trip. Each new row comes
# back with the position of its item (the first inserted under its id). The same text for
# every batch, its columns sent as arrays: a multi-row VALUES would bind ten parameters per
# row and be rendered anew for each batch size, on the path every request waits on.
# Deliveries are inserted in the batch's order, the order their ids give for applying
# them; that sort reads every claim first, and signatures are claimed in key order, so two
# batches claiming the same ones wait for each other instead of deadlocking.
_RECORD_POSTGRESQL = """WITH batch AS (
    SELECT * FROM unnest(%(endpoint)s::text[], %(delivery_id)s::text[], %(signature)s::text[], %(job_id)s::text[],
                         %(status)s::text[], %(body)s::bytea[], %(headers)s::text[]) WITH ORDINALITY
        AS batch(endpoint, delivery_id, signature, job_id, status, body, headers, position)
), claimed AS (
    INSERT INTO delivery_signatures (endpoint, signature, delivery_id, seen_at)
    SELECT DISTINCT ON (endpoint, signature) endpoint, signature, delivery_id, %(now)s
    FROM batch WHERE signature IS NOT NULL
    ORDER BY endpoint, signature, position
    ON CONFLICT (endpoint, signature) DO NOTHING
    RETURNING endpoint, signature, delivery_id
), eligible AS (
    SELECT * FROM batch
    WHERE signature IS NULL
       OR (endpoint, signature, delivery_id) IN (SELECT endpoint, signature, delivery_id FROM claimed)
), inserted AS (
    INSERT INTO deliveries (endpoint, delivery_id, job_id, status, body, headers, received_at, last_enqueued_at,
                            attempts, duplicates)
    SELECT endpoint, delivery_id, job_id, status, body, headers::json, %(now)s, %(now)s, 0, 0
    FROM eligible ORDER BY position
    ON CONFLICT (endpoint, delivery_id) DO NOTHING
    RETURNING id, endpoint, delivery_id, job_id
)
SELECT DISTINCT ON (inserted.id) eligible.position - 1 AS position, inserted.id, inserted.delivery_id, inserted.job_id
FROM inserted JOIN eligible USING (endpoint, delivery_id)
ORDER BY inserted.id, eligible.position"""
# SQLite (the embedded default): item by item in the caller's transaction, statements built once.
_CLAIM_SQLITE = INSERT["sqlite"](SIGNATURES).on_conflict_do_nothing()
_RECORD_SQLITE = (
    INSERT["sqlite"](DELIVERIES)
    .on_conflict_do_nothing()
    .returning(DELIVERIES.c.id, DELIVERIES.c.delivery_id, DELIVERIES.c.job_id)
)

# The headers worth keeping with a delivery: what identifies and authenticates it.
KEPT_HEADERS = (
    "content-type",
    "user-agent",
    "x-timestamp",
    "x-delivery-id",
    "idempotency-key",
    "webhook-id",
    "webhook-timestamp",
)
# The headers that may name a delivery, in order of precedence, as CONTRACT §4 spells them.
ID_HEADERS = {"webhook-id": "webhook-id", "x-delivery-id": "X-Delivery-Id", "idempotency-key": "Idempotency-Key"}
MAX_ID_LENGTH = 255  # deliveries.delivery_id


def delivery_id_for(headers, body: bytes) -> str:
    """webhook-id, else X-Delivery-Id or Idempotency-Key, else the SHA-256 of the body.

    An id header longer than the column is refused (PayloadError), never cut: two
    deliveries whose ids share their first 255 characters would be one.
    """
    ids = {name: (headers.get(name) or "").strip(" \t") for name in ID_HEADERS}
    too_long = {
        ID_HEADERS[name]: [f"Must be at most {MAX_ID_LENGTH} characters."]
        for name, value in ids.items() if len(value) > MAX_ID_LENGTH
    }
    if too_long:
        raise PayloadError(
            "validation_error", f"{', '.join(too_long)}: a delivery id is at most {MAX_ID_LENGTH} characters",
            too_long,
        )
    return next((value for value in ids.values() if value), None) or "sha256:" + hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Incoming:
    """A verified, validated delivery on its way to the database."""

    endpoint: str
    delivery_id: str
    job_id: str
    status: str
    body: bytes
    headers: dict[str, str]
    signature: str | None = None  # the verified HMAC (shared.signing.Verified.signature)


def incoming(
    endpoint: str, delivery_id: str, callback: Callback, body: bytes, headers: dict[str, str],
    signature: str | None = None,
) -> Incoming:
    """`headers` by lowercase name."""
    kept = {name: headers[name] for name in KEPT_HEADERS if name in headers}
    status = lifecycle.canonical(callback.word) or lifecycle.PENDING
    return Incoming(endpoint, delivery_id, callback.job_id, status, body, kept, signature)


@dataclass(frozen=True)
class Recorded:
    pk: int
    delivery_id: str  # the recorded delivery's: for a duplicate, the id it was first recorded under
    job_id: str
    duplicate: bool


def record_many(connection: Connection, batch: list[Incoming]) -> list[Recorded]:
    """Record accepted deliveries; each one already recorded (before, or earlier in the same
    batch) under its id, or its signature, is found instead and counted as a duplicate.

    PostgreSQL: one statement when nothing conflicts; with an autocommit connection, the
    batch is committed when this returns.
    """
    recorded: list[Recorded | None] = [None] * len(batch)
    waiting = list(range(len(batch)))
    while waiting:
        for row in _insert(connection, [batch[index] for index in waiting]):
            recorded[waiting[row.position]] = Recorded(row.id, row.delivery_id, row.job_id, duplicate=False)
        conflicted = [index for index in waiting if recorded[index] is None]
        waiting = _count_duplicates(connection, batch, conflicted, recorded)
    return recorded  # type: ignore[return-value]


class _New(NamedTuple):
    position: int  # in the items given to _insert
    id: int
    delivery_id: str
    job_id: str


def _insert(connection: Connection, items: list[Incoming]) -> list[_New]:
    """Claim the items' signatures, insert the items that are new; the rows inserted."""
    now = utcnow()
    if connection.dialect.name == "postgresql":
        return [_New(*row) for row in connection.exec_driver_sql(_RECORD_POSTGRESQL, {
            "now": now,
            "endpoint": [item.endpoint for item in items],
            "delivery_id": [item.delivery_id for item in items],
            "signature": [item.signature for item in items],
            "job_id": [item.job_id for item in items],
            "status": [item.status for item in items],
            "body": [item.body for item in items],
            "headers": [json.dumps(item.headers) for item in items],
        })]
    new = []
    for position, item in enumerate(items):
        if item.signature is not None:
            claim = dict(endpoint=item.endpoint, signature=item.signature, delivery_id=item.delivery_id, seen_at=now)
            if connection.execute(_CLAIM_SQLITE, claim).rowcount != 1:
                continue
        row = connection.execute(_RECORD_SQLITE, dict(
            endpoint=item.endpoint, delivery_id=item.delivery_id, job_id=item.job_id, status=item.status,
            body=item.body, headers=item.headers, received_at=now, last_enqueued_at=now, attempts=0, duplicates=0,
        )).first()
        if row is not None:
            new.append(_New(position, *row))
    return new


def _count_duplicates(connection: Connection, batch: list[Incoming], conflicted: list[int], recorded) -> list[int]:
    """Answer each conflicted item with the delivery it repeats, and count it there: the one
    its signature names, else the one of its id. The items whose delivery is gone by now
    (deleted) are returned, to be inserted again, their signatures no longer naming it."""
    if not conflicted:
        return []
    items = [batch[index] for index in conflicted]
    # One round trip: the deliveries the signatures name (NULL where one is gone), and
    # those of the ids.
    by_signature = (
        select(SIGNATURES.c.endpoint, SIGNATURES.c.signature, SIGNATURES.c.delivery_id.label("named"),
               DELIVERIES.c.id, DELIVERIES.c.delivery_id, DELIVERIES.c.job_id)
        .select_from(SIGNATURES.outerjoin(DELIVERIES, and_(
            DELIVERIES.c.endpoint == SIGNATURES.c.endpoint, DELIVERIES.c.delivery_id == SIGNATURES.c.delivery_id,
        )))
        .where(tuple_(SIGNATURES.c.endpoint, SIGNATURES.c.signature).in_(
            sorted({(item.endpoint, item.signature) for item in items if item.signature})))
    )
    by_id = (
        select(DELIVERIES.c.endpoint, null().label("signature"), DELIVERIES.c.delivery_id.label("named"),
               DELIVERIES.c.id, DELIVERIES.c.delivery_id, DELIVERIES.c.job_id)
        .where(tuple_(DELIVERIES.c.endpoint, DELIVERIES.c.delivery_id).in_(
            sorted({(item.endpoint, item.delivery_id) for item in items})))
    )
    rows = connection.execute(union_all(by_signature, by_id)).all()
    named = {(row.endpoint, row.signature): row for row in rows if row.signature is not None}
    ids = {(row.endpoint, row.named): row for row in rows if row.signature is None}
    counts: dict[int, int] = {}
    gone, stale = [], set()
    for index, item in zip(conflicted, items):
        # What was signed first: a replay under another X-Delivery-Id is the signed request's.
        signed = named.get((item.endpoint, item.signature))
        row = signed if signed is not None else ids.get((item.endpoint, item.delivery_id))
        if row is None or row.id is None:
            if signed is not None:
                stale.add((item.endpoint, item.signature, signed.named))
            gone.append(index)
            continue
        recorded[index] = Recorded(row.id, row.delivery_id, row.job_id, duplicate=True)
        counts[row.id] = counts.get(row.id, 0) + 1
    if counts:
        connection.execute(
            update(DELIVERIES).where(DELIVERIES.c.id.in_(counts))
            .values(duplicates=DELIVERIES.c.duplicates + case(counts, value=DELIVERIES.c.id, else_=0))
        )
    if stale:
        # Only while it still names the deleted delivery: another process may have freed
        # and claimed it again meanwhile.
        connection.execute(delete(SIGNATURES).where(
            tuple_(SIGNATURES.c.endpoint, SIGNATURES.c.signature, SIGNATURES.c.delivery_id).in_(sorted(stale))
        ))
    return gone


def begin_attempt(session: Session, pk: int, max_attempts: int) -> int | None:
    """Count one more attempt at applying a delivery; None when applied or given up.

    For a delivery whose message came back after its worker died: committed on its own
    before the work, so that a delivery that kills its worker every time is given up after
    `max_attempts` instead of being redelivered for ever.
    """
    return session.scalar(
        update(DELIVERIES)
        .where(DELIVERIES.c.id == pk, DELIVERIES.c.applied_at.is_(None), DELIVERIES.c.attempts < max_attempts)
        .values(attempts=DELIVERIES.c.attempts + 1)
        .returning(DELIVERIES.c.attempts)
    )


def record_failure(session: Session, pk: int, error: str, *, attempt_counted: bool) -> None:
    """Keep the error of a failed attempt, and count the attempt unless it is counted already
    (begin_attempt): the claim that counted it otherwise was rolled back with the work."""
    values = {"last_error": error[:2000]}
    if not attempt_counted:
        values["attempts"] = DELIVERIES.c.attempts + 1
    session.execute(update(DELIVERIES).where(DELIVERIES.c.id == pk).values(**values))


class DeliveryFailed(Exception):
    """Applying delivery `pk` failed (the cause is chained). It may be an earlier delivery of
    a job than the ones asked for: the error and the attempt are its own."""

    def __init__(self, pk: int):
        super().__init__(f"delivery {pk} failed")
        self.pk = pk


def apply(session: Session, pks: list[int], max_attempts: int, *, attempt_counted: bool = False) -> list[str]:
    """Apply recorded deliveries to their jobs, each exactly once and each job's in the order
    received (delivery id order). Returns what happened, for logs.

    The jobs are locked first (found, or auto-created), then their unapplied deliveries
    received up to the last one asked for are claimed and applied in id order, in this
    transaction: a worker given a job's later delivery applies the earlier ones before it,
    and the one given an earlier delivery finds it applied. Claiming and applying commit
    together or not at all. Jobs are locked in the order of the ids the callbacks name, so
    two workers whose batches share jobs wait for each other instead of deadlocking.

    The claim counts each delivery's attempt and leaves out those given up after
    `max_attempts`, which therefore hold back nothing. `attempt_counted`: the attempts of
    the deliveries asked for are counted already (begin_attempt).
    """
    now = utcnow()
    query = select(DELIVERIES.c.id, DELIVERIES.c.endpoint, DELIVERIES.c.body).where(
        DELIVERIES.c.id.in_(pks), DELIVERIES.c.applied_at.is_(None)
    )
    if not attempt_counted:
        query = query.where(DELIVERIES.c.attempts < max_attempts)
    asked = {row.id: _load(row) for row in session.execute(query)}
    # Each job by every name its deliveries may be recorded under: its id, its sender's own id.
    jobs: dict[str, Job] = {}
    for name in sorted({cb.job_id for _, cb in asked.values()}):
        job = _lock_job(session, name, [pk for pk, (_, cb) in asked.items() if cb.job_id == name], max_attempts, now)
        jobs[name] = job
        for other in _names(session, job):
            jobs.setdefault(other, job)
    outcomes, applied = [], set()
    for row in _claim(session, asked, list(jobs), max_attempts, attempt_counted, now):
        endpoint, cb = asked.get(row.id) or _load(row)
        # Those not asked for were claimed by the name they were recorded under.
        job = jobs[cb.job_id if row.id in asked else row.job_id]
        try:
            outcome = apply_callback(session, job, endpoint, row.id, cb, now, received_at=row.received_at)
        except Exception as exc:
            raise DeliveryFailed(row.id) from exc
        applied.add(row.id)
        outcomes.append(f"delivery {row.id}: {outcome}")
    skipped = len(set(pks) - applied)
    if skipped:
        outcomes.append(f"{skipped} already applied or given up")
    return outcomes


def _load(row) -> tuple[Endpoint, Callback]:
    try:
        endpoint = ENDPOINTS[row.endpoint]
        return endpoint, load(endpoint, row.body)
    except Exception as exc:
        raise DeliveryFailed(row.id) from exc


def _lock_job(session: Session, name: str, asked: list[int], max_attempts: int, now: datetime) -> Job:
    """The job a callback names, locked; auto-created when there is none."""
    job = _find_job(session, name)
    if job is not None:
        return job
    # A dispatch answer recording `name` as a job's external id at this moment takes the
    # same lock: it commits first (the job is found below), or it waits for this job and
    # merges it into its own (merge_auto_created).
    _lock_name(session, name)
    job = _find_job(session, name)
    if job is not None:
        return job
    # Made from the earliest of its deliveries still to apply, as applying them one by one would.
    first = session.execute(
        select(DELIVERIES.c.id, DELIVERIES.c.endpoint, DELIVERIES.c.body)
        .where(
            DELIVERIES.c.applied_at.is_(None),
            or_(DELIVERIES.c.id.in_(asked), and_(DELIVERIES.c.job_id == name, DELIVERIES.c.attempts < max_attempts)),
        )
        .order_by(DELIVERIES.c.id)
        .limit(1)
    ).first()
    if first is None:  # applied meanwhile, by a worker that made the job
        return _find_job(session, name)
    endpoint, cb = _load(first)
    return _auto_create(session, cb, endpoint.job_type, now)


def _names(session: Session, job: Job) -> list[str]:
    """The job ids a job's deliveries carry: its own, and its sender's own id unless a job of
    that id exists (which _find_job finds first)."""
    if job.external_id and session.scalar(select(Job.id).where(Job.id == job.external_id)) is None:
        return [job.id, job.external_id]
    return [job.id]


def _claim(
    session: Session, asked: dict, names: list[str], max_attempts: int, attempt_counted: bool, now: datetime
) -> list:
    """Claim the deliveries asked for, and the unapplied ones received before the last of
    them under the names of the locked jobs; in id order."""
    earlier = and_(
        DELIVERIES.c.job_id.in_(names), DELIVERIES.c.id < max(asked, default=0), DELIVERIES.c.attempts < max_attempts
    )
    values = dict(
        applied_at=now,
        last_error=None,
        apply_ms=milliseconds_since(session, DELIVERIES.c.received_at, now),
        attempts=DELIVERIES.c.attempts + 1,
    )
    if attempt_counted:
        mine = DELIVERIES.c.id.in_(list(asked))
        values["attempts"] = case((mine, DELIVERIES.c.attempts), else_=DELIVERIES.c.attempts + 1)
    else:
        mine = and_(DELIVERIES.c.id.in_(list(asked)), DELIVERIES.c.attempts < max_attempts)
    claimed = session.execute(
        update(DELIVERIES)
        .where(DELIVERIES.c.applied_at.is_(None), or_(mine, earlier))
        .values(**values)
        .returning(
            DELIVERIES.c.id, DELIVERIES.c.endpoint, DELIVERIES.c.job_id, DELIVERIES.c.body, DELIVERIES.c.received_at
        )
    ).all()
    return sorted(claimed, key=lambda row: row.id)


def _find_job(session: Session, job_id: str) -> Job | None:
    job = session.scalar(select(Job).where(Job.id == job_id).with_for_update(of=Job))
    if job is None:
        # A backend that answered our dispatch with its own id calls back with that id.
        job = session.scalar(
            select(Job).where(Job.external_id == job_id).order_by(Job.created_at).limit(1).with_for_update(of=Job)
        )
    return job


def _lock_name(session: Session, name: str) -> None:
    """Serialise, until commit, whoever makes `name` a job: a callback auto-creating the job
    of that id, a dispatch answer recording it as a job's external id.

    PostgreSQL: an advisory lock (the job row may not exist yet). SQLite runs one write
    transaction at a time (BEGIN IMMEDIATE) already.
    """
    if dialect(session) == "postgresql":
        key = int.from_bytes(hashlib.sha256(b"job-name:" + name.encode()).digest()[:8], "big", signed=True)
        session.execute(select(func.pg_advisory_xact_lock(key)))


def merge_auto_created(session: Session, job: Job, external_id: str) -> list[int]:
    """Merge into `job` (locked) the job auto-created from callbacks under `external_id`, the
    sender's own id for it, when the sender called back before its answer to our dispatch
    was recorded. Returns the deliveries to apply again, for the caller to enqueue after commit.

    The auto-created job goes with its events, artifacts and notifications; its deliveries
    become unapplied again, to be applied to `job` through its external id, in order. A
    worker applying one of them meanwhile holds the job's lock: this waits for its commit.
    """
    _lock_name(session, external_id)
    orphan = session.scalar(
        select(Job).where(Job.id == external_id, Job.source == "callback").with_for_update(of=Job)
    )
    if orphan is None:
        return []
    pks = session.scalars(
        update(DELIVERIES)
        .where(DELIVERIES.c.job_id == external_id)
        .values(applied_at=None, attempts=0, last_error=None, apply_ms=None, last_enqueued_at=utcnow())
        .returning(DELIVERIES.c.id)
    ).all()
    session.execute(delete(Job.__table__).where(Job.__table__.c.id == external_id))  # the rest cascades
    session.expunge(orphan)
    log.info("job %s, auto-created from callbacks, merged into job %s (%d deliveries to apply again)",
             external_id, job.id, len(pks))
    return sorted(pks)


def _auto_create(session: Session, cb: Callback, job_type: str, now: datetime) -> Job:
    # No other transaction makes this job meanwhile: the caller holds the lock on its name
    # (_lock_name; SQLite writes one transaction at a time).
    owner = get_or_create_user(session, cb.user_id) if cb.user_id else None
    job = Job(id=cb.job_id, job_type=cb.job_type or job_type, params={}, user_id=owner.id if owner else None,
              source="callback", created_at=now)
    job.user = owner
    apply_change(session, job, lifecycle.created("callback", owned=owner is not None, now=now))
    log.info("job %s auto-created from a callback (owner %s)", job.id, cb.user_id or "none")
    return job


def apply_callback(
    session: Session, job: Job, endpoint: Endpoint, delivery_pk: int | None, cb: Callback, now: datetime,
    received_at: datetime | None = None,
) -> str:
    """Apply a sender's status report to its job, locked by the caller.

    The event carries the time the delivery was received, so the job's history reads in
    the order the sender sent it.
    """
    reported = lifecycle.Reported(cb.word, cb.progress, cb.result, cb.error, cb.message, cb.user_id)
    change = lifecycle.decide(lifecycle.State.of(job), reported, now)
    session.add(
        JobEvent(
            job_id=job.id,
            kind="callback",
            status=cb.word,
            progress=cb.progress,
            message=cb.message,
            data=cb.payload,
            delivery_pk=delivery_pk,
            created_at=received_at or now,
        )
    )
    if cb.artifacts and change.fields.get("status", job.status) == lifecycle.SUCCEEDED:
        # Stored with the success (before its notification, which counts them), or kept from
        # a completion arriving after a success without them (say, through n8n's hook).
        artifacts.store(session, job.id, cb.artifacts)
    previous = job.status
    apply_change(session, job, change)
    if not change.fields:
        return f"job {job.id} is {job.status}: {cb.word!r} recorded as an event only"
    return f"job {job.id}: {previous} -> {job.status} ({cb.word}, {job.progress}%)"
