"""Dispatch to n8n (CONTRACT §6): signed POST, retry schedule kept in the database."""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

import requests
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared import actions, lifecycle
from shared.callbacks import storable
from shared.deliveries import merge_auto_created
from shared.jobs import apply_change
from shared.models import Job, JobEvent, utcnow
from shared.schemas import external_id
from shared.settings import Settings
from shared.signing import hmac_signature

log = logging.getLogger(__name__)

# While one worker holds an attempt, nobody else starts one: longer than the HTTP timeout.
ATTEMPT_LEASE = timedelta(seconds=60)
RETRYABLE_STATUSES = frozenset({408, 425, 429}) | frozenset(range(500, 600))
MAX_RETRY_AFTER = 24 * 3600


@dataclass(frozen=True)
class Outcome:
    """What one attempt gave: `ok`, `retry` (transient) or `permanent`."""

    kind: str
    error: str | None = None
    http_status: int | None = None
    retry_after: float | None = None
    external_id: str | None = None


def claim(session: Session, job_id: str, now: datetime) -> Job | None:
    """Take the next attempt of a pending, due job; None when it is not ours to send."""
    claimed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == lifecycle.PENDING, Job.next_attempt_at <= now)
        .values(attempts=Job.attempts + 1, next_attempt_at=now + ATTEMPT_LEASE)
    ).rowcount
    return session.get(Job, job_id) if claimed else None


def build_request(settings: Settings, job: Job, now: float) -> tuple[str | None, dict, bytes]:
    """URL, headers and exact body bytes of the dispatch of `job`."""
    url = job.dispatch_url or settings.job_dispatch_url
    # Keyed on the source: only POST /api/actions makes these, so a POST /api/jobs that
    # happens to say job_type "crm_action" keeps the plain job body.
    if job.source == actions.JOB_SOURCE:
        # An action posted while N8N_BASE_URL was unset holds its route name: resolved now.
        url = actions.route_url(job.dispatch_url, settings.n8n_base_url)
        payload = actions.envelope(job.params, job.id, settings.callback_url, settings.action_source, now)
        payload["attempt"] = job.attempts
    else:
        payload = {
            "job_id": job.id,
            "user_id": job.user.external_id if job.user else None,
            "job_type": job.job_type,
            "params": job.params,
            "callback_url": settings.callback_url,
            "attempt": job.attempts,
        }
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = str(int(now))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "ai-bridge/1",
        "Idempotency-Key": job.id,
        "X-Timestamp": timestamp,
    }
    if settings.n8n_webhook_secrets:
        headers["X-Signature"] = hmac_signature(settings.n8n_webhook_secrets[0], timestamp, body)
    if settings.n8n_api_key:
        headers["X-API-Key"] = settings.n8n_api_key
    return url, headers, body


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # str.isdigit() alone takes "²", which float() refuses
        return min(float(value), MAX_RETRY_AFTER)
    try:
        return min(max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0), MAX_RETRY_AFTER)
    except (TypeError, ValueError, OverflowError):
        return None


def _external_id(response: requests.Response, job_id: str) -> str | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    if not isinstance(answer, dict):
        return None
    for key in ("job_id", "id", "executionId"):
        value = answer.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            own_id = external_id(value)
            # Kept whole or not at all: a callback names it as its job_id (1 to 255 storable
            # characters), and a cut id could match another job's.
            if own_id != job_id and 1 <= len(own_id) <= 255 and storable(own_id):
                return own_id
    return None


def _not_configured(job: Job) -> str:
    """Why a job has no URL to go to, naming the variable to set."""
    if job.source == actions.JOB_SOURCE:
        # An action's route is a webhook name, not N8N_JOB_WEBHOOK: only N8N_BASE_URL helps.
        return f"not configured: set N8N_BASE_URL (the route {job.dispatch_url!r} resolves against it)"
    return "not configured: set N8N_JOB_WEBHOOK or N8N_BASE_URL"


def send(http: requests.Session, settings: Settings, job: Job) -> Outcome:
    """POST the job to its route and classify the answer. Never raises for network faults."""
    url, headers, body = build_request(settings, job, time.time())
    if not url:
        return Outcome("permanent", _not_configured(job))
    if not settings.n8n_webhook_secrets:
        return Outcome("permanent", "not configured: set N8N_WEBHOOK_SECRET (dispatches are always signed)")
    try:
        response = http.post(url, data=body, headers=headers, timeout=settings.dispatch_timeout)
    except requests.Timeout:
        return Outcome("retry", f"timed out after {settings.dispatch_timeout:g} s")
    except requests.RequestException as exc:
        return Outcome("retry", f"connection error: {type(exc).__name__}")
    status = response.status_code
    if 200 <= status < 300:
        return Outcome("ok", http_status=status, external_id=_external_id(response, job.id))
    detail = f"HTTP {status} from {url}"
    snippet = response.text[:200].strip()
    if snippet:
        detail += f": {snippet}"
    if status in RETRYABLE_STATUSES:
        return Outcome("retry", detail, status, _retry_after(response.headers.get("Retry-After")))
    return Outcome("permanent", detail, status)


@dataclass(frozen=True)
class Recorded:
    """An attempt's outcome as recorded, and the deliveries to apply again once it is committed."""

    message: str
    redeliver: list[int]


def record(session: Session, settings: Settings, job_id: str, outcome: Outcome, rng=random) -> Recorded:
    """Apply an attempt's outcome to the job (locked): dispatched, retry later, or failed."""
    now = utcnow()
    job = session.scalar(select(Job).where(Job.id == job_id).with_for_update(of=Job))
    data = {"attempt": job.attempts, "http_status": outcome.http_status, "error": outcome.error}
    redeliver = []
    if outcome.external_id and not job.external_id:
        job.external_id = outcome.external_id
        data["external_id"] = outcome.external_id
        # The sender may have called back under its own id before this answer was
        # recorded: the job its callbacks made becomes this one.
        redeliver = merge_auto_created(session, job, outcome.external_id)
        if redeliver:
            data["merged"] = {"job_id": outcome.external_id, "deliveries": len(redeliver)}
    happening = _happening(settings, job.attempts, outcome, now, rng)
    change = lifecycle.decide(lifecycle.State.of(job), happening, now)
    if not change.fields:
        # Cancelled meanwhile, or the sender called back before its answer reached us:
        # the attempt is recorded as it went, the job stays as it is now.
        event_status = "dispatched" if outcome.kind == "ok" else "ignored"
        message = f"attempt {job.attempts} answered ({outcome.error or 'accepted'}) once the job was {job.status}"
    elif isinstance(happening, lifecycle.DispatchAccepted):
        event_status, message = "dispatched", f"attempt {job.attempts}: accepted (HTTP {outcome.http_status})"
    elif isinstance(happening, lifecycle.DispatchRetrying):
        data["next_attempt_at"] = happening.next_attempt_at.isoformat()
        delay = (happening.next_attempt_at - now).total_seconds()
        event_status, message = "retrying", f"attempt {job.attempts}: {outcome.error}; next in {delay:.1f} s"
    else:
        event_status, message = "failed", f"attempt {job.attempts}: {happening.error}"
    session.add(
        JobEvent(job_id=job.id, kind="dispatch", status=event_status, message=message, data=data, created_at=now)
    )
    apply_change(session, job, change)
    return Recorded(message, redeliver)


def _happening(settings: Settings, attempts: int, outcome: Outcome, now: datetime, rng):
    """What attempt number `attempts` of a job amounts to, given its outcome and the schedule."""
    if outcome.kind == "ok":
        return lifecycle.DispatchAccepted()
    if outcome.kind == "permanent":
        return lifecycle.DispatchRefused(outcome.error)
    if attempts > len(settings.retry_schedule):
        return lifecycle.DispatchGaveUp(f"gave up after {attempts} attempts: {outcome.error}")
    delay = settings.retry_schedule[attempts - 1] * rng.uniform(0.8, 1.2)
    if outcome.retry_after is not None:
        delay = max(delay, outcome.retry_after)
    return lifecycle.DispatchRetrying(now + timedelta(seconds=delay))
