"""Operations: /healthz, /readyz, /metrics, /openapi.json."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import func, select, text

from ingress.db import session
from ingress.openapi import spec
from shared.models import Delivery, Heartbeat, Job, JobImage, utcnow
from shared.queue import celery_app

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return {"status": "ok"}


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


@bp.get("/readyz")
def readyz():
    checks = {"database": check_database(), "broker": check_broker()}
    ready = not any(checks.values())
    body = {"status": "ready" if ready else "unavailable", "checks": {k: v or "ok" for k, v in checks.items()}}
    response = jsonify(body)
    if not ready:
        response.status_code = 503
        response.headers["Retry-After"] = "5"
    return response


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
    return Response(generate_latest(registry), mimetype="text/plain; version=0.0.4; charset=utf-8")


@bp.get("/openapi.json")
def openapi():
    return jsonify(spec(current_app.extensions["settings"]))
