"""Operations: /healthz, /readyz, /metrics, /openapi.json."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import func, select, text

from ingress.db import session
from ingress.errors import RETRY_AFTER_SECONDS
from ingress.openapi import spec
from shared import schemas, sweeps
from shared.models import Delivery, Heartbeat, Job, JobImage, utcnow
from shared.queue import celery_app
from shared.settings import Settings

# A heartbeat older than this many sweep intervals names its process as not running.
STALE_AFTER_INTERVALS = 3

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return schemas.health_schema.dump({"status": "ok"})


def check_broker() -> str | None:
    """None when the broker accepts a connection, else the reason."""
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
        return None
    except Exception as exc:  # kombu raises many types for a dead broker
        return f"{type(exc).__name__}: {exc}"


def check_database() -> str | None:
    try:
        session().execute(text("SELECT 1"))
        return None
    except Exception as exc:
        return f"{type(exc).__name__}"


def process_checks(ages: dict[str, float | None], sweep_interval: float) -> dict[str, str | None]:
    """beat's tick and the worker canary, each None when recent, else the process to look at.

    `ages` maps the heartbeats rows "beat" and "canary" to their age in seconds (None: never).
    """
    limit = STALE_AFTER_INTERVALS * sweep_interval
    beat_age, canary_age = ages.get(sweeps.BEAT), ages.get(sweeps.CANARY)
    checks: dict[str, str | None] = {"beat": None, "worker": None}
    if beat_age is None:
        checks["beat"] = "no tick recorded yet: is the beat process running?"
    elif beat_age > limit:
        checks["beat"] = f"no tick for {beat_age:.0f} s: is the beat process running?"
    if canary_age is None or canary_age > limit:
        ran = "the canary never ran" if canary_age is None else f"canary last ran {canary_age:.0f} s ago"
        # Beat schedules the canary: while beat is down, its age says nothing about workers.
        cause = "beat does not schedule it (see beat)" if checks["beat"] else "no worker consumes the sweeps queue"
        checks["worker"] = f"{ran}: {cause}"
    return checks


def readiness(settings: Settings) -> dict[str, str | None]:
    """The checks of /readyz and doctor: None for each part that works, else what is wrong."""
    checks = {"database": check_database(), "broker": check_broker()}
    reason = "the database is unavailable"
    if checks["database"] is None:
        try:
            ages = sweeps.heartbeat_ages(session(), (sweeps.BEAT, sweeps.CANARY))
            return {**checks, **process_checks(ages, settings.sweep_interval)}
        except Exception as exc:  # the database failed since its check
            reason = type(exc).__name__
    # beat and the workers keep their heartbeats in the database.
    unknown = f"unknown: the heartbeats cannot be read ({reason})"
    return {**checks, "beat": unknown, "worker": unknown}


@bp.get("/readyz")
def readyz():
    checks = readiness(current_app.extensions["settings"])
    ready = not any(checks.values())
    body = schemas.readiness_schema.dump(
        {"status": "ready" if ready else "unavailable", "checks": {k: v or "ok" for k, v in checks.items()}}
    )
    return (body, 200) if ready else (body, 503, {"Retry-After": RETRY_AFTER_SECONDS})


class DatabaseCollector:
    """Figures read from the tables at scrape time: the same whichever process answers."""

    def __init__(self, db):
        self.db = db

    def collect(self):
        jobs = GaugeMetricFamily("bridge_jobs", "Jobs by status", labels=["status"])
        for status, count in self.db.execute(select(Job.status, func.count()).group_by(Job.status)):
            jobs.add_metric([status], count)
        yield jobs
        received = GaugeMetricFamily("bridge_deliveries_received", "Deliveries recorded", labels=["endpoint"])
        duplicates = GaugeMetricFamily("bridge_deliveries_duplicates", "Duplicate deliveries answered", labels=["endpoint"])
        pending = GaugeMetricFamily("bridge_deliveries_unapplied", "Deliveries recorded, not applied yet", labels=["endpoint"])
        rows = self.db.execute(
            select(
                Delivery.endpoint,
                func.count(),
                func.coalesce(func.sum(Delivery.duplicates), 0),
                func.count().filter(Delivery.applied_at.is_(None)),
            ).group_by(Delivery.endpoint)
        )
        for endpoint, count, dups, unapplied in rows:
            received.add_metric([endpoint], count)
            duplicates.add_metric([endpoint], dups)
            pending.add_metric([endpoint], unapplied)
        yield from (received, duplicates, pending)
        yield from self._outcomes()
        yield self._histogram(
            "bridge_delivery_apply_seconds", "Seconds from a delivery's receipt to its application",
            Delivery.apply_ms, APPLY_MS_BUCKETS, 1000.0, Delivery.endpoint,
        )
        yield self._histogram(
            "bridge_image_size_bytes", "Sizes of the generated images stored", JobImage.size_bytes,
            IMAGE_BYTES_BUCKETS, 1.0,
        )
        canary = GaugeMetricFamily("bridge_beat_canary_age_seconds", "Seconds since beat's canary task last ran in a worker")
        last = self.db.scalar(select(Heartbeat.beat_at).where(Heartbeat.name == "canary"))
        if last is not None:
            canary.add_metric([], (utcnow() - last).total_seconds())
        yield canary


    def _outcomes(self):
        reports = GaugeMetricFamily(
            "bridge_deliveries_by_status", "Deliveries recorded per endpoint and reported status (succeeded, failed, ...)",
            labels=["endpoint", "status"],
        )
        rows = self.db.execute(
            select(Delivery.endpoint, Delivery.status, func.count()).group_by(Delivery.endpoint, Delivery.status)
        )
        for endpoint, status, count in rows:
            reports.add_metric([endpoint, status or "unknown"], count)
        yield reports

    def _histogram(self, name, documentation, column, buckets, scale, label=None):
        """A histogram computed in SQL from a column (divided by `scale` for the unit)."""
        columns = [func.count().filter(column <= bound) for bound in buckets]
        columns += [func.count(column), func.coalesce(func.sum(column), 0)]
        query = select(*([label] if label is not None else []), *columns).where(column.is_not(None))
        if label is not None:
            query = query.group_by(label)
        family = HistogramMetricFamily(name, documentation, labels=["endpoint"] if label is not None else None)
        for row in self.db.execute(query):
            values = list(row)
            labels = [values.pop(0)] if label is not None else []
            counts, total, summed = values[: len(buckets)], values[len(buckets)], values[len(buckets) + 1]
            family.add_metric(
                labels,
                [(f"{bound / scale:g}", count) for bound, count in zip(buckets, counts)] + [("+Inf", total)],
                sum_value=float(summed) / scale,
            )
        return family


APPLY_MS_BUCKETS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
IMAGE_BYTES_BUCKETS = tuple(kib * 1024 for kib in (64, 256, 512, 1024, 2048, 4096, 8192, 16384))


@bp.get("/metrics")
def metrics():
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(session()))
    # content_type, not mimetype: Flask appends "; charset=utf-8" to a text/* mimetype.
    return Response(generate_latest(registry), content_type="text/plain; version=0.0.4; charset=utf-8")


@bp.get("/openapi.json")
def openapi():
    return jsonify(spec(current_app.extensions["settings"]))
